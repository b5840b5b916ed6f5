import Foundation
import Hummingbird
import TesseraCore
import TesseraFederation
import TesseraHTTP
import TesseraPostgres

/// The admins' Trust policies pages (DESIGN §13): which CI workloads may exchange their OIDC token
/// for an organization token, a condition editor that works without JavaScript, a policy's last
/// exchanges, and deleting a policy with the count of live tokens it revokes. The same
/// ``TrustPolicyService`` as `/orgs/{org}/trust-policies`, audited with actor kind `console`.
struct ConsoleTrustPages {
    let controller: ConsoleController
    var views: ConsoleViews { controller.views }
    var policies: TrustPolicyService { controller.trustPolicies }
    static let back = "/console/trust-policies"
    /// Rows of the condition editor (blank rows are ignored).
    static let conditionRows = 5

    func addRoutes(to pages: RouterGroup<ConsoleContext>) {
        pages.get("trust-policies", use: list)
        pages.post("trust-policies", use: create)
        pages.get("trust-policies/:id", use: show)
        pages.post("trust-policies/:id/delete", use: delete)
    }

    func id(_ context: ConsoleContext) throws -> UUID {
        guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            throw TrustPolicyService.notFound
        }
        return id
    }

    static func conditions(_ policy: TrustPolicyRecord) -> [[String: String]] {
        policy.conditions.patterns.sorted { $0.key < $1.key }.map { ["claim": $0.key, "pattern": $0.value] }
    }

    @Sendable func list(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try ConsoleAdminPages(controller: controller).admin(context)
        let rows = try await policies.list(org: user.org, logger: context.logger).map { listed -> [String: Any] in
            let policy = listed.policy
            return [
                "id": policy.id.uuidString.lowercased(), "name": policy.name, "issuer": policy.issuer,
                "audience": policy.audience, "conditions": Self.conditions(policy),
                "scopes": policy.scopes.joined(separator: " "), "lifetime": Self.minutes(policy.maxLifetimeSeconds),
                "label": policy.label, "live": listed.liveTokens,
            ]
        }
        var data: [String: Any] = [
            "title": "Trust policies", "policies": rows, "empty": rows.isEmpty, "back": Self.back,
            "conditionRows": (0..<Self.conditionRows).map { ["index": $0 + 1, "first": $0 == 0] },
        ]
        let form = try await controller.createForm(user, context: context)
        data["scopeChoices"] = form["scopeChoices"]
        return views.page("trust-policies", data, user: user)
    }

    @Sendable func create(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try ConsoleAdminPages(controller: controller).admin(context)
        let form = context.form
        let record = try await controller.flashing(context, back: Self.back) {
            let claims = form.all("claim")
            let patterns = form.all("pattern")
            var conditions: [String: String] = [:]
            for (claim, pattern) in zip(claims, patterns) {
                let claim = claim.trimmingCharacters(in: .whitespaces)
                let pattern = pattern.trimmingCharacters(in: .whitespaces)
                if claim.isEmpty && pattern.isEmpty { continue }
                guard !claim.isEmpty, !pattern.isEmpty else {
                    throw DomainError.invalidField("conditions", "need both a claim and a pattern on each row")
                }
                conditions[claim] = pattern
            }
            let lifetime = try form.text("lifetime").map { text -> Int in
                guard let minutes = Int(text) else {
                    throw DomainError.invalidField("lifetime", "must be a number of minutes")
                }
                return minutes * 60
            }
            return try await policies.create(
                .init(
                    name: form.text("name") ?? "", issuer: form.text("issuer") ?? "",
                    audience: form.text("audience") ?? "", conditions: conditions, scopes: form.all("scopes"),
                    maxLifetimeSeconds: lifetime, label: form.text("label")),
                org: user.org, actor: context.actor, logger: context.logger)
        }
        controller.flash(context, "Trust policy \(record.name) added: CI matching it can exchange its OIDC token now.")
        throw ConsoleRedirect(location: "\(Self.back)/\(record.id.uuidString.lowercased())")
    }

    @Sendable func show(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try ConsoleAdminPages(controller: controller).admin(context)
        let listed = try await policies.policy(try id(context), org: user.org, logger: context.logger)
        let policy = listed.policy
        let now = Date()
        let exchanges = try await policies.lastExchanges(policy.id, org: user.org, logger: context.logger).map {
            token -> [String: Any] in
            [
                "created": ConsoleController.format(token.createdAt), "subject": token.federation?.subject ?? "",
                "prefix": token.tokenPrefix, "scopes": token.scopes.joined(separator: " "),
                "state": token.status != .active
                    ? token.status.rawValue : token.isExpired(at: now) ? "expired" : "active",
                "expires": token.expiresAt.map(ConsoleController.format) ?? "—",
                "used": token.lastUsedAt.map(ConsoleController.format) ?? "never",
            ]
        }
        return views.page(
            "trust-policy",
            [
                "title": "Trust policy \(policy.name)", "id": policy.id.uuidString.lowercased(), "name": policy.name,
                "issuer": policy.issuer, "audience": policy.audience, "conditions": Self.conditions(policy),
                "scopes": policy.scopes.joined(separator: " "), "lifetime": Self.minutes(policy.maxLifetimeSeconds),
                "label": policy.label, "live": listed.liveTokens, "hasLive": listed.liveTokens > 0,
                "createdBy": policy.createdBy, "created": ConsoleController.format(policy.createdAt),
                "exchanges": exchanges, "noExchanges": exchanges.isEmpty, "nav_trust_policies": true,
            ],
            user: user)
    }

    @Sendable func delete(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try ConsoleAdminPages(controller: controller).admin(context)
        let id = try id(context)
        try await controller.flashing(context, back: Self.back) {
            let revoked = try await policies.delete(id, org: user.org, actor: context.actor, logger: context.logger)
            controller.flash(
                context,
                revoked == 0
                    ? "The trust policy was deleted."
                    : "The trust policy was deleted and the \(revoked) live token\(revoked == 1 ? "" : "s") it issued revoked."
            )
        }
        throw ConsoleRedirect(location: Self.back)
    }

    static func minutes(_ seconds: Int) -> String {
        seconds % 60 == 0 ? "\(seconds / 60) min" : "\(seconds) s"
    }
}
