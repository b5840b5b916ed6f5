import Foundation
import Hummingbird
import Logging
import PostgresNIO
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices
import TesseraWebhooks

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

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<
        WebhookInfo
    > {
        let (caller, org) = try await admin(request, context)
        let body = try await request.decodeJSON(WebhookCreateRequest.self, context: context)
        let record = try await webhooks.create(
            .init(
                url: body.url, events: body.events, description: body.description, secret: body.secret,
                active: body.active),
            org: org, actor: caller.auditActor(context), logger: context.logger)
        return EditedResponse(status: .created, response: WebhookInfo(record, showingSecret: true))
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> WebhookList {
        let (_, org) = try await admin(request, context)
        return WebhookList(webhooks: try await webhooks.list(org: org, logger: context.logger).map { WebhookInfo($0) })
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (_, org) = try await admin(request, context)
        return WebhookInfo(
            try await webhooks.webhook(try Self.id(context, "webhook"), org: org, logger: context.logger))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> WebhookInfo {
        let (caller, org) = try await admin(request, context)
        let id = try Self.id(context, "webhook")
        let body = try await request.decodeJSON(WebhookUpdateRequest.self, context: context)
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

    @Sendable func deliveries(_ request: Request, context: TesseraRequestContext) async throws -> DeliveryList {
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
        return DeliveryList(deliveries: rows.map(WebhookDeliveryInfo.init))
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
