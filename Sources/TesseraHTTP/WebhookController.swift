import Foundation
import Hummingbird
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// A webhook as the API shows it: never its secret, except once in the answer that made it
/// (create, or a PATCH with `rotateSecret`).
struct WebhookInfo: ResponseEncodable {
    let id: String
    let url: String
    let description: String?
    let events: [String]
    let active: Bool
    let createdDate: Int64
    let createdBy: String
    let updatedDate: Int64
    let secret: String?

    init(_ record: WebhookRecord, showingSecret: Bool = false) {
        id = record.id.uuidString.lowercased()
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
    /// Lower case, as in the `webhook-id` header.
    let id: String
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
        id = record.id.uuidString.lowercased()
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

/// What the API and the console do with webhooks: validated, one transaction each with its
/// audit event. (The cache is not concerned: `WriteJournal.note()` with no target.)
public struct WebhookOperations: Sendable {
    let store: TesseraStore
    let policy: WebhookTargetPolicy

    public struct Draft: Sendable {
        public var url: String
        public var events: [String]?
        public var description: String?
        public var secret: String?
        public var active: Bool?
    }

    public struct Change: Sendable {
        public var url: String?
        public var events: [String]?
        public var description: String?
        public var active: Bool?
        public var rotateSecret = false
    }

    static let notFound = Problem(.notFound, "Webhook not found")

    func list(org: OrganizationRecord, logger: Logger) async throws -> [WebhookRecord] {
        try await store.withConnection { try await $0.webhooks(orgID: org.id, logger: logger) }
    }

    func webhook(_ id: UUID, org: OrganizationRecord, logger: Logger) async throws -> WebhookRecord {
        guard
            let record = try await store.withConnection({ try await $0.webhook(id: id, orgID: org.id, logger: logger) })
        else { throw Self.notFound }
        return record
    }

    /// The new webhook, with its secret (the caller shows it once).
    func create(_ draft: Draft, org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws
        -> WebhookRecord
    {
        let url = try checkedURL(draft.url)
        let events = try Self.checkedEvents(draft.events ?? WebhookEvent.names)
        let description = try Self.checkedDescription(draft.description)
        var secret = WebhookSecret.generate()
        if let own = draft.secret {
            do {
                secret = try WebhookSecret(parsing: own)
            } catch {
                throw Problem.invalidField("secret", error.description)
            }
        }
        let record = try await store.transaction { connection in
            let record = try await connection.insertWebhook(
                orgID: org.id, url: url, description: description, events: events, secret: secret.encoded,
                active: draft.active ?? true, createdBy: actor.username ?? "unknown", logger: logger)
            try await connection.recordAudit(
                actor.event(
                    orgID: org.id, action: .webhookCreated,
                    details: ["id": record.id.uuidString.lowercased(), "url": url]),
                logger: logger)
            return record
        }
        WriteJournal.note()
        return record
    }

    func update(_ id: UUID, _ change: Change, org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws
        -> WebhookRecord
    {
        let url = try change.url.map(checkedURL)
        let events = try change.events.map(Self.checkedEvents)
        let description = try change.description.map { try Self.checkedDescription($0) }
        let secret = change.rotateSecret ? WebhookSecret.generate() : nil
        let record = try await store.transaction { connection -> WebhookRecord? in
            guard
                let record = try await connection.updateWebhook(
                    id: id, orgID: org.id, url: url, description: description, events: events, secret: secret?.encoded,
                    active: change.active, logger: logger)
            else { return nil }
            var details = ["id": id.uuidString.lowercased()]
            if secret != nil { details["secret"] = "rotated" }
            if let active = change.active { details["active"] = String(active) }
            try await connection.recordAudit(
                actor.event(orgID: org.id, action: .webhookUpdated, details: details), logger: logger)
            return record
        }
        guard let record else { throw Self.notFound }
        WriteJournal.note()
        return record
    }

    func delete(_ id: UUID, org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws {
        let deleted = try await store.transaction { connection in
            guard try await connection.deleteWebhook(id: id, orgID: org.id, logger: logger) else { return false }
            try await connection.recordAudit(
                actor.event(orgID: org.id, action: .webhookDeleted, details: ["id": id.uuidString.lowercased()]),
                logger: logger)
            return true
        }
        guard deleted else { throw Self.notFound }
        WriteJournal.note()
    }

    func deliveries(of webhook: WebhookRecord, limit: Int, logger: Logger) async throws -> [WebhookDeliveryRecord] {
        try await store.withConnection {
            try await $0.webhookDeliveries(webhookID: webhook.id, limit: limit, logger: logger)
        }
    }

    func redeliver(
        _ delivery: UUID, of webhook: WebhookRecord, org: OrganizationRecord, actor: AuditActor, logger: Logger
    ) async throws {
        let found = try await store.transaction { connection in
            guard try await connection.redeliver(deliveryID: delivery, webhookID: webhook.id, logger: logger) else {
                return false
            }
            try await connection.recordAudit(
                actor.event(
                    orgID: org.id, action: .webhookRedelivered, details: ["delivery": delivery.uuidString.lowercased()]),
                logger: logger)
            return true
        }
        guard found else { throw Problem(.notFound, "No such delivery of this webhook") }
        WriteJournal.note()
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
        guard !unique.isEmpty, unique.allSatisfy(WebhookEvent.names.contains) else {
            throw Problem.invalidField(
                "events", "must be a non-empty list of: \(WebhookEvent.names.joined(separator: ", "))")
        }
        return unique
    }

    static func checkedDescription(_ description: String?) throws -> String? {
        guard let description, !description.isEmpty else { return nil }
        try Limits.checkDescription(description)
        return description
    }
}

/// `/orgs/{org}/webhooks` (DESIGN §11): org admins manage their org's endpoints and read the
/// delivery log.
struct WebhookController {
    let operations: WebhookOperations
    let organizations: OrganizationController

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

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<
        WebhookInfo
    > {
        let (caller, org) = try await admin(request, context)
        let body = try await request.decodeJSON(CreateRequest.self, context: context)
        let record = try await operations.create(
            .init(
                url: body.url, events: body.events, description: body.description, secret: body.secret,
                active: body.active),
            org: org, actor: caller.auditActor(context), logger: context.logger)
        return EditedResponse(status: .created, response: WebhookInfo(record, showingSecret: true))
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> [String: [WebhookInfo]] {
        let (_, org) = try await admin(request, context)
        return ["webhooks": try await operations.list(org: org, logger: context.logger).map { WebhookInfo($0) }]
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (_, org) = try await admin(request, context)
        return WebhookInfo(
            try await operations.webhook(try Self.id(context, "webhook"), org: org, logger: context.logger))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (caller, org) = try await admin(request, context)
        let id = try Self.id(context, "webhook")
        let body = try await request.decodeJSON(UpdateRequest.self, context: context)
        let change = WebhookOperations.Change(
            url: body.url, events: body.events, description: body.description, active: body.active,
            rotateSecret: body.rotateSecret == true)
        let record = try await operations.update(
            id, change, org: org, actor: caller.auditActor(context), logger: context.logger)
        return WebhookInfo(record, showingSecret: change.rotateSecret)
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let (caller, org) = try await admin(request, context)
        try await operations.delete(
            try Self.id(context, "webhook"), org: org, actor: caller.auditActor(context), logger: context.logger)
        return Message(message: "Webhook deleted successfully")
    }

    @Sendable func deliveries(_ request: Request, context: TesseraRequestContext) async throws -> [String:
        [WebhookDeliveryInfo]]
    {
        let (_, org) = try await admin(request, context)
        let webhook = try await operations.webhook(try Self.id(context, "webhook"), org: org, logger: context.logger)
        var limit = 50
        if let raw = request.uri.queryParameters.get("limit") {
            guard let value = Int(raw), (1...500).contains(value) else {
                throw Problem(.badRequest, "limit must be from 1 to 500")
            }
            limit = value
        }
        let rows = try await operations.deliveries(of: webhook, limit: limit, logger: context.logger)
        return ["deliveries": rows.map(WebhookDeliveryInfo.init)]
    }

    @Sendable func redeliver(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<Message>
    {
        let (caller, org) = try await admin(request, context)
        let webhook = try await operations.webhook(try Self.id(context, "webhook"), org: org, logger: context.logger)
        try await operations.redeliver(
            try Self.id(context, "delivery"), of: webhook, org: org, actor: caller.auditActor(context),
            logger: context.logger)
        return EditedResponse(status: .accepted, response: Message(message: "Delivery queued"))
    }

    func admin(_ request: Request, _ context: TesseraRequestContext) async throws -> (Caller, OrganizationRecord) {
        try await organizations.resolve(request, context, scope: "org:admin", admin: true)
    }

    static func id(_ context: TesseraRequestContext, _ name: String) throws -> UUID {
        guard let id = context.parameters.get(name).flatMap(UUID.init(uuidString:)) else {
            throw name == "webhook"
                ? WebhookOperations.notFound : Problem(.notFound, "No such delivery of this webhook")
        }
        return id
    }
}
