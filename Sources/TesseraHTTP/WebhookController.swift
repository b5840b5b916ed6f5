import Foundation
import Hummingbird
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// A webhook as the API shows it: never its secret, except once in the answer that made it
/// (create, or a PATCH with `rotateSecret`).
struct WebhookInfo: ResponseEncodable {
    let id: UUID
    let url: String
    let description: String?
    let events: [String]
    let active: Bool
    let createdDate: Int64
    let createdBy: String
    let updatedDate: Int64
    let secret: String?

    init(_ record: WebhookRecord, showingSecret: Bool = false) {
        id = record.id
        url = record.url
        description = record.description
        events = record.events
        active = record.active
        createdDate = Int64(record.createdAt.timeIntervalSince1970)
        createdBy = record.createdBy
        updatedDate = Int64(record.updatedAt.timeIntervalSince1970)
        secret = showingSecret ? record.secret : nil
    }
}

struct WebhookDeliveryInfo: Encodable {
    let id: UUID
    let event: String
    let status: String
    let attempts: Int
    let createdDate: Int64
    let nextAttemptDate: Int64?
    let lastAttemptDate: Int64?
    let lastStatus: Int?
    let lastError: String?
    let deliveredDate: Int64?
    let payload: String

    init(_ record: WebhookDeliveryRecord) {
        func epoch(_ date: Date?) -> Int64? { date.map { Int64($0.timeIntervalSince1970) } }
        id = record.id
        event = record.event
        status = record.status
        attempts = record.attempts
        createdDate = Int64(record.createdAt.timeIntervalSince1970)
        nextAttemptDate = epoch(record.nextAttemptAt)
        lastAttemptDate = epoch(record.lastAttemptAt)
        lastStatus = record.lastStatus
        lastError = record.lastError
        deliveredDate = epoch(record.deliveredAt)
        payload = record.payload
    }
}

/// `/orgs/{org}/webhooks` (DESIGN §11): org admins manage their org's endpoints and read the
/// delivery log. Every change is one transaction with its audit event.
struct WebhookController {
    let store: TesseraStore
    let organizations: OrganizationController
    let policy: WebhookTargetPolicy

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post(":org/webhooks", use: create)
        group.get(":org/webhooks", use: list)
        group.get(":org/webhooks/:webhook", use: get)
        group.patch(":org/webhooks/:webhook", use: update)
        group.delete(":org/webhooks/:webhook", use: delete)
        group.get(":org/webhooks/:webhook/deliveries", use: deliveries)
        group.post(":org/webhooks/:webhook/deliveries/:delivery/redeliver", use: redeliver)
    }

    struct CreateRequest: Decodable {
        var url: String
        var events: [String]?
        var description: String?
        var secret: String?
        var active: Bool?
    }

    struct UpdateRequest: Decodable {
        var url: String?
        var events: [String]?
        var description: String?
        var active: Bool?
        var rotateSecret: Bool?
    }

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<WebhookInfo> {
        let (caller, org) = try await admin(request, context)
        let body = try await request.decodeJSON(CreateRequest.self, context: context)
        let url = try checkedURL(body.url)
        let events = try Self.checkedEvents(body.events ?? WebhookEvent.all)
        let description = try Self.checkedDescription(body.description)
        var secret = WebhookSecret.generate()
        if let own = body.secret {
            do {
                secret = try WebhookSecret(parsing: own)
            } catch {
                throw Problem.invalidField("secret", error.description)
            }
        }
        let record = try await store.transaction { connection in
            let record = try await connection.insertWebhook(
                orgID: org.id, url: url, description: description, events: events, secret: secret.encoded,
                active: body.active ?? true, createdBy: caller.username, logger: context.logger)
            try await connection.recordAudit(
                caller.auditEvent(context, action: "webhook.created", details: ["id": record.id.uuidString.lowercased(), "url": url]),
                logger: context.logger)
            return record
        }
        WriteJournal.note()
        return EditedResponse(status: .created, response: WebhookInfo(record, showingSecret: true))
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> [String: [WebhookInfo]] {
        let (_, org) = try await admin(request, context)
        let records = try await store.withConnection { try await $0.webhooks(orgID: org.id, logger: context.logger) }
        return ["webhooks": records.map { WebhookInfo($0) }]
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (_, org) = try await admin(request, context)
        return WebhookInfo(try await webhook(context, org: org))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (caller, org) = try await admin(request, context)
        let id = try Self.id(context, "webhook")
        let body = try await request.decodeJSON(UpdateRequest.self, context: context)
        let url = try body.url.map(checkedURL)
        let events = try body.events.map(Self.checkedEvents)
        let description = try body.description.map { try Self.checkedDescription($0) }
        let secret = body.rotateSecret == true ? WebhookSecret.generate() : nil
        let record = try await store.transaction { connection -> WebhookRecord? in
            guard let record = try await connection.updateWebhook(
                id: id, orgID: org.id, url: url, description: description, events: events, secret: secret?.encoded,
                active: body.active, logger: context.logger)
            else { return nil }
            var details = ["id": id.uuidString.lowercased()]
            if secret != nil { details["secret"] = "rotated" }
            try await connection.recordAudit(caller.auditEvent(context, action: "webhook.updated", details: details), logger: context.logger)
            return record
        }
        guard let record else { throw Self.notFound }
        WriteJournal.note()
        return WebhookInfo(record, showingSecret: secret != nil)
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let (caller, org) = try await admin(request, context)
        let id = try Self.id(context, "webhook")
        let deleted = try await store.transaction { connection in
            guard try await connection.deleteWebhook(id: id, orgID: org.id, logger: context.logger) else { return false }
            try await connection.recordAudit(
                caller.auditEvent(context, action: "webhook.deleted", details: ["id": id.uuidString.lowercased()]),
                logger: context.logger)
            return true
        }
        guard deleted else { throw Self.notFound }
        WriteJournal.note()
        return Message(message: "Webhook deleted successfully")
    }

    @Sendable func deliveries(_ request: Request, context: TesseraRequestContext) async throws -> [String: [WebhookDeliveryInfo]] {
        let (_, org) = try await admin(request, context)
        let record = try await webhook(context, org: org)
        var limit = 50
        if let raw = request.uri.queryParameters.get("limit") {
            guard let value = Int(raw), (1...500).contains(value) else { throw Problem(.badRequest, "limit must be from 1 to 500") }
            limit = value
        }
        let rows = try await store.withConnection {
            try await $0.webhookDeliveries(webhookID: record.id, limit: limit, logger: context.logger)
        }
        return ["deliveries": rows.map(WebhookDeliveryInfo.init)]
    }

    @Sendable func redeliver(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<Message> {
        let (caller, org) = try await admin(request, context)
        let record = try await webhook(context, org: org)
        let delivery = try Self.id(context, "delivery")
        let found = try await store.transaction { connection in
            guard try await connection.redeliver(deliveryID: delivery, webhookID: record.id, logger: context.logger) else { return false }
            try await connection.recordAudit(
                caller.auditEvent(context, action: "webhook.redelivered", details: ["delivery": delivery.uuidString.lowercased()]),
                logger: context.logger)
            return true
        }
        guard found else { throw Problem(.notFound, "No such delivery of this webhook") }
        WriteJournal.note()
        return EditedResponse(status: .accepted, response: Message(message: "Delivery queued"))
    }

    // MARK: - Helpers

    static let notFound = Problem(.notFound, "Webhook not found")

    func admin(_ request: Request, _ context: TesseraRequestContext) async throws -> (Caller, OrganizationRecord) {
        try await organizations.resolve(request, context, scope: "org:admin", admin: true)
    }

    func webhook(_ context: TesseraRequestContext, org: OrganizationRecord) async throws -> WebhookRecord {
        let id = try Self.id(context, "webhook")
        guard let record = try await store.withConnection({ try await $0.webhook(id: id, orgID: org.id, logger: context.logger) })
        else { throw Self.notFound }
        return record
    }

    static func id(_ context: TesseraRequestContext, _ name: String) throws -> UUID {
        guard let id = context.parameters.get(name).flatMap(UUID.init(uuidString:)) else {
            throw name == "webhook" ? notFound : Problem(.notFound, "No such delivery of this webhook")
        }
        return id
    }

    func checkedURL(_ url: String) throws -> String {
        do {
            return try policy.check(url).absoluteString
        } catch {
            throw Problem.invalidField("url", error.description)
        }
    }

    static func checkedEvents(_ events: [String]) throws -> [String] {
        let unique = Array(Set(events)).sorted()
        guard !unique.isEmpty, unique.allSatisfy(WebhookEvent.all.contains) else {
            throw Problem.invalidField("events", "must be a non-empty list of: \(WebhookEvent.all.joined(separator: ", "))")
        }
        return unique
    }

    static func checkedDescription(_ description: String?) throws -> String? {
        guard let description, !description.isEmpty else { return nil }
        guard description.count <= 1000, Validation.isPlainText(description, multiline: true) else {
            throw Problem.invalidField("description", "must be at most 1000 characters")
        }
        return description
    }
}
