import Foundation
import Hummingbird
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraServices
import TesseraVerification

/// The admins' Webhooks pages (DESIGN §11): the org's endpoints, their delivery log with
/// "Redeliver", and the signing secret shown once after creating or rotating. The same
/// ``WebhookService`` as `/orgs/{org}/webhooks`, audited with actor kind `console`.
struct ConsoleWebhookPages {
    let controller: ConsoleController
    var views: ConsoleViews { controller.views }
    var operations: WebhookService { controller.webhooks }
    static let back = "/console/webhooks"

    func addRoutes(to pages: RouterGroup<ConsoleContext>) {
        pages.get("webhooks", use: list)
        pages.post("webhooks", use: create)
        pages.get("webhooks/:id", use: deliveries)
        pages.post("webhooks/:id/active", use: setActive)
        pages.post("webhooks/:id/rotate", use: rotate)
        pages.post("webhooks/:id/delete", use: delete)
        pages.post("webhooks/:id/deliveries/:delivery/redeliver", use: redeliver)
    }

    func admin(_ context: ConsoleContext) throws -> ConsoleUser {
        try ConsoleAdminPages(controller: controller).admin(context)
    }

    func id(_ context: ConsoleContext, _ name: String = "id") throws -> UUID {
        guard let id = context.parameters.get(name).flatMap(UUID.init(uuidString:)) else {
            throw WebhookService.notFound
        }
        return id
    }

    @Sendable func list(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let hooks = try await operations.list(org: user.org, logger: context.logger)
        let rows = hooks.map { hook -> [String: Any] in
            [
                "id": hook.id.uuidString.lowercased(), "url": hook.url, "description": hook.description ?? "",
                "events": hook.events.joined(separator: ", "), "active": hook.active,
                "since": ConsoleController.format(hook.createdAt),
            ]
        }
        let events = WebhookEvent.names.map { ["name": $0] }
        return views.page(
            "webhooks",
            ["title": "Webhooks", "webhooks": rows, "empty": rows.isEmpty, "events": events, "back": Self.back],
            user: user)
    }

    @Sendable func create(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let form = context.form
        let record = try await controller.flashing(context, back: Self.back) {
            let events = form.all("events")
            return try await operations.create(
                .init(
                    url: form.text("url") ?? "", events: events.isEmpty ? nil : events,
                    description: form.text("description")),
                org: user.org, actor: context.actor, logger: context.logger)
        }
        return secretPage(record, heading: "Webhook added", user: user)
    }

    @Sendable func deliveries(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let hook = try await operations.webhook(try id(context), org: user.org, logger: context.logger)
        let rows = try await operations.deliveries(of: hook, limit: 100, logger: context.logger).map {
            delivery -> [String: Any] in
            [
                "id": delivery.id.uuidString.lowercased(), "event": delivery.event, "status": delivery.status,
                "attempts": delivery.attempts,
                "created": ConsoleController.format(delivery.createdAt),
                "last": delivery.lastError ?? delivery.lastStatus.map { "HTTP \($0)" } ?? "—",
                "next": delivery.nextAttemptAt.map(ConsoleController.format) ?? "—",
            ]
        }
        return views.page(
            "webhook",
            [
                "title": "Webhook deliveries", "webhookID": hook.id.uuidString.lowercased(), "url": hook.url,
                "active": hook.active,
                "events": hook.events.joined(separator: ", "), "deliveries": rows, "empty": rows.isEmpty,
                "nav_webhooks": true,
            ],
            user: user)
    }

    @Sendable func setActive(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let id = try id(context)
        let active = context.form["active"] == "true"
        try await controller.flashing(context, back: Self.back) {
            _ = try await operations.update(
                id, .init(active: active), org: user.org, actor: context.actor, logger: context.logger)
            controller.flash(
                context,
                active ? "The webhook is active again." : "The webhook is paused: new events are not sent to it.")
        }
        throw ConsoleRedirect(location: Self.back)
    }

    @Sendable func rotate(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let id = try id(context)
        let record = try await controller.flashing(context, back: Self.back) {
            try await operations.update(
                id, .init(rotateSecret: true), org: user.org, actor: context.actor, logger: context.logger)
        }
        return secretPage(record, heading: "Webhook secret rotated", user: user)
    }

    @Sendable func delete(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let id = try id(context)
        try await controller.flashing(context, back: Self.back) {
            try await operations.delete(id, org: user.org, actor: context.actor, logger: context.logger)
            controller.flash(context, "The webhook was removed.")
        }
        throw ConsoleRedirect(location: Self.back)
    }

    @Sendable func redeliver(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let id = try id(context)
        let back = "/console/webhooks/\(id.uuidString.lowercased())"
        try await controller.flashing(context, back: back) {
            let hook = try await operations.webhook(id, org: user.org, logger: context.logger)
            try await operations.redeliver(
                try self.id(context, "delivery"), of: hook, org: user.org, actor: context.actor, logger: context.logger)
            controller.flash(context, "The delivery is queued again.")
        }
        throw ConsoleRedirect(location: back)
    }

    /// The signing secret, this once (never kept in the session, like a token's).
    func secretPage(_ record: WebhookRecord, heading: String, user: ConsoleUser) -> Response {
        views.page(
            "webhook-secret",
            [
                "title": heading, "heading": heading, "url": record.url, "secret": record.secret, "back": Self.back,
                "nav_webhooks": true,
            ],
            user: user)
    }
}
