import Foundation
import Hummingbird
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraServices
import TesseraWebhooks

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

/// `/orgs/{org}/webhooks` (DESIGN §11): org admins manage their org's endpoints and read the
/// delivery log.
struct WebhookController {
    let webhooks: WebhookService
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
        let record = try await webhooks.create(
            .init(
                url: body.url, events: body.events, description: body.description, secret: body.secret,
                active: body.active),
            org: org, actor: caller.auditActor(context), logger: context.logger)
        return EditedResponse(status: .created, response: WebhookInfo(record, showingSecret: true))
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> [String: [WebhookInfo]] {
        let (_, org) = try await admin(request, context)
        return ["webhooks": try await webhooks.list(org: org, logger: context.logger).map { WebhookInfo($0) }]
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (_, org) = try await admin(request, context)
        return WebhookInfo(
            try await webhooks.webhook(try Self.id(context, "webhook"), org: org, logger: context.logger))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (caller, org) = try await admin(request, context)
        let id = try Self.id(context, "webhook")
        let body = try await request.decodeJSON(UpdateRequest.self, context: context)
        let change = WebhookService.Change(
            url: body.url, events: body.events, description: body.description, active: body.active,
            rotateSecret: body.rotateSecret == true)
        let record = try await webhooks.update(
            id, change, org: org, actor: caller.auditActor(context), logger: context.logger)
        return WebhookInfo(record, showingSecret: change.rotateSecret)
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let (caller, org) = try await admin(request, context)
        try await webhooks.delete(
            try Self.id(context, "webhook"), org: org, actor: caller.auditActor(context), logger: context.logger)
        return Message(message: "Webhook deleted successfully")
    }

    @Sendable func deliveries(_ request: Request, context: TesseraRequestContext) async throws -> [String:
        [WebhookDeliveryInfo]]
    {
        let (_, org) = try await admin(request, context)
        let webhook = try await webhooks.webhook(try Self.id(context, "webhook"), org: org, logger: context.logger)
        var limit = 50
        if let raw = request.uri.queryParameters.get("limit") {
            guard let value = Int(raw), (1...500).contains(value) else {
                throw Problem(.badRequest, "limit must be from 1 to 500")
            }
            limit = value
        }
        let rows = try await webhooks.deliveries(of: webhook, limit: limit, logger: context.logger)
        return ["deliveries": rows.map(WebhookDeliveryInfo.init)]
    }

    @Sendable func redeliver(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<Message>
    {
        let (caller, org) = try await admin(request, context)
        let webhook = try await webhooks.webhook(try Self.id(context, "webhook"), org: org, logger: context.logger)
        try await webhooks.redeliver(
            try Self.id(context, "delivery"), of: webhook, org: org, actor: caller.auditActor(context),
            logger: context.logger)
        return EditedResponse(status: .accepted, response: Message(message: "Delivery queued"))
    }

    func admin(_ request: Request, _ context: TesseraRequestContext) async throws -> (Caller, OrganizationRecord) {
        try await organizations.resolve(request, context, scope: "org:admin", admin: true)
    }

    static func id(_ context: TesseraRequestContext, _ name: String) throws -> UUID {
        guard let id = context.parameters.get(name).flatMap(UUID.init(uuidString:)) else {
            if name == "webhook" { throw WebhookService.notFound }
            throw Problem(.notFound, "No such delivery of this webhook")
        }
        return id
    }
}
