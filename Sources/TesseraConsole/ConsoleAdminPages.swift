import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import Logging
import PostgresNIO
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraServices
import TesseraVerification

/// The admins' pages of the console: Members, Policy, Audit log. Same operations as the API's
/// `/orgs/{org}/…` routes (``MemberService``, ``OrganizationService``, ``UserService``), audited
/// with actor kind `console`.
struct ConsoleAdminPages {
    let controller: ConsoleController
    var store: TesseraStore { controller.store }
    var views: ConsoleViews { controller.views }
    var operations: TokenService { controller.operations }

    func addRoutes(to pages: RouterGroup<ConsoleContext>) {
        pages.get("members", use: members)
        pages.post("members", use: putMember)
        pages.get("members/:username/remove", use: confirmRemove)
        pages.post("members/:username/remove", use: removeMember)
        pages.post("members/:username/token", use: createMemberToken)
        pages.get("policy", use: policy)
        pages.post("policy", use: savePolicy)
        pages.post("policy/scim-token", use: createSCIMToken)
        pages.get("audit", use: audit)
        pages.get("platform", use: platform)
        pages.post("platform/orgs", use: createOrganization)
        pages.post("platform/users/:username", use: changeUser)
    }

    static let adminsOnly = Problem(.forbidden, "Only organization admins can open this page.")

    func admin(_ context: ConsoleContext) throws -> ConsoleUser {
        let user = try context.signedIn()
        guard user.isAdmin else { throw Self.adminsOnly }
        return user
    }

    /// Query strings without empty fields (what a GET form sends for blank inputs), so links are
    /// clean and the API's strict parameter rules apply to what is left.
    static func dropEmptyParameters(_ request: Request) throws {
        guard let components = URLComponents(string: request.uri.description),
            let items = components.queryItems, items.contains(where: { ($0.value ?? "").isEmpty })
        else { return }
        var cleaned = components
        let kept = items.filter { !($0.value ?? "").isEmpty }
        cleaned.queryItems = kept.isEmpty ? nil : kept
        throw ConsoleRedirect(location: cleaned.string ?? components.path)
    }

    // MARK: - Members

    @Sendable func members(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let members = try await store.withConnection {
            try await MembershipRepository($0, logger: context.logger).list(orgID: user.org.id)
        }
        let rows = members.map { member -> [String: Any] in
            [
                "username": member.username, "role": member.role.rawValue, "isAdmin": member.role == .admin,
                "groups": member.groups.joined(separator: ", "), "status": member.userStatus.rawValue,
                "since": ConsoleController.format(member.createdAt), "isMe": member.userID == user.caller.userID,
                "scim": member.scimManaged, "suspended": member.suspended,
            ]
        }
        return views.page(
            "members", ["title": "Members", "members": rows, "empty": members.isEmpty, "back": "/console/members"],
            user: user)
    }

    /// Adds a member, or changes a member's role and groups.
    @Sendable func putMember(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let back = "/console/members"
        let form = context.form
        try await flashing(context, back: back) {
            guard let username = form.text("username"), Validation.isValidUsername(username) else {
                throw Problem.invalidField(
                    "username", "must be 1-255 of A-Z a-z 0-9 ._@+- starting with a letter or digit")
            }
            guard let role = MembershipRole(rawValue: form["role"] ?? "member") else {
                throw Problem.invalidField("role", "must be admin or member")
            }
            let groups = (form["groups"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }
            try Limits.checkGroups(groups)
            let (_, added) = try await controller.members.put(
                orgID: user.org.id, username: username, role: role, groups: groups, by: context.actor)
            controller.flash(
                context, added ? "\(username) was added as \(role.rawValue)." : "\(username) is now \(role.rawValue).")
        }
        throw ConsoleRedirect(location: back)
    }

    @Sendable func confirmRemove(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let username = try context.parameters.require("username")
        let tokens = try await controller.members.liveTokensAtStake(
            org: user.org, username: username, logger: context.logger)
        return views.page(
            "confirm-remove",
            [
                "title": "Remove member", "username": username, "tokens": tokens, "hasTokens": tokens > 0,
                "isMe": username == user.caller.username,
            ],
            user: user)
    }

    /// Removes the member; their personal tokens in this org are revoked in the same transaction.
    @Sendable func removeMember(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let username = try context.parameters.require("username")
        let back = "/console/members"
        try await flashing(context, back: back) {
            try await controller.members.remove(
                org: user.org, username: username, leaving: username == user.caller.username, by: context.actor)
            controller.flash(context, "\(username) was removed; their personal tokens in \(user.org.slug) are revoked.")
        }
        throw ConsoleRedirect(location: username == user.caller.username ? "/console/my-token" : back)
    }

    /// An admin creates a member's personal token (shown once, like any other).
    @Sendable func createMemberToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let username = try context.parameters.require("username")
        let issued = try await flashing(context, back: "/console/members") {
            let body = try await controller.createRequest(context.form, user: user, context: context)
            return try await operations.createFor(
                username, body, caller: user.caller, org: user.org, actor: context.actor, logger: context.logger)
        }
        return controller.secretPage(
            issued, user: user, heading: "Token created for \(username)", back: "/console/members", request: request)
    }

    // MARK: - Policy

    @Sendable func policy(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let catalog = try await store.withConnection {
            try await OrganizationRepository($0, logger: context.logger).scopeCatalog(orgID: user.org.id)
        }
        let org = user.org
        let scopes = catalog.sorted { $0.name < $1.name }.map { entry -> [String: Any] in
            [
                "name": entry.name, "description": entry.description, "adminOnly": entry.adminOnly,
                "implies": entry.implies.joined(separator: " "), "hasImplies": !entry.implies.isEmpty,
                "isDefault": org.defaultScopes.contains(entry.name),
                "fieldID": "default-" + entry.name.map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined(),
            ]
        }
        return views.page(
            "policy",
            [
                "title": "Policy", "defaultDays": org.defaultTokenLifetimeDays,
                "maxDays": org.maxTokenLifetimeDays.map(String.init) ?? "",
                "allowNonExpiring": org.allowNonExpiringTokens, "idleDays": org.idleTimeoutDays.map(String.init) ?? "",
                "apiGroup": org.apiGroup ?? "", "userTokensEnabled": org.userTokensEnabled,
                "adminGroup": org.adminGroup ?? "", "userGroup": org.userGroup ?? "",
                "scimBase": "\(request.origin)/scim/v2/\(org.slug)",
                "displayName": org.displayName,
                "personalTokenLimit": org.personalTokenLimit,
                "scopes": scopes,
            ],
            user: user)
    }

    /// The whole form is the new policy (blank = no limit); a new scope may be added to the catalog.
    @Sendable func savePolicy(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let form = context.form
        let back = "/console/policy"
        try await flashing(context, back: back) {
            func days(_ field: String, label: String) throws -> Int? {
                guard let text = form.text(field) else { return nil }
                guard let value = Int(text), (1...36_500).contains(value) else {
                    throw Problem.invalidField(label, "must be a number of days from 1 to 36500, or blank")
                }
                return value
            }
            var patch = OrganizationPatch()
            patch.displayName = form.text("displayName")
            guard let defaultDays = try days("defaultDays", label: "Default lifetime") else {
                throw Problem.invalidField("Default lifetime", "is required")
            }
            // An unchanged default under a new, lower cap follows the cap (as a PATCH with the cap alone).
            patch.defaultTokenLifetimeDays = defaultDays == user.org.defaultTokenLifetimeDays ? nil : defaultDays
            patch.maxTokenLifetimeDays = .some(try days("maxDays", label: "Maximum lifetime"))
            patch.idleTimeoutDays = .some(try days("idleDays", label: "Idle timeout"))
            patch.allowNonExpiringTokens = form["allowNonExpiring"] == "on"
            patch.userTokensEnabled = form["userTokensEnabled"] == "on"
            patch.apiGroup = .some(form.text("apiGroup"))
            patch.adminGroup = .some(form.text("adminGroup"))
            patch.userGroup = .some(form.text("userGroup"))
            guard let limit = Int(form.text("personalTokenLimit") ?? "1"), (1...1000).contains(limit) else {
                throw Problem.invalidField("Personal tokens per member", "must be a number from 1 to 1000")
            }
            patch.personalTokenLimit = limit
            let defaults = form.all("defaultScopes")
            guard !defaults.isEmpty else {
                throw Problem.invalidField("Default scopes", "must hold at least one scope")
            }
            patch.defaultScopes = defaults
            if let name = form.text("newScope") {
                patch.scopes = [
                    ScopeCatalog.Entry(
                        name: name, description: form.text("newScopeDescription") ?? "",
                        adminOnly: form["newScopeAdminOnly"] == "on",
                        implies: [])
                ]
            }
            try await controller.organizations.applyPolicy(
                patch, org: user.org, actor: context.actor, logger: context.logger)
            controller.flash(context, "Policy saved.")
        }
        throw ConsoleRedirect(location: back)
    }

    /// An organization token holding only `scim:provision` for the org's IdP, shown once.
    @Sendable func createSCIMToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        let back = "/console/policy"
        let issued = try await flashing(context, back: back) {
            let label = context.form.text("label") ?? "scim"
            return try await operations.createFor(
                label,
                TokenService.CreateRequest(
                    name: "SCIM provisioning (\(label))", description: "The identity provider's SCIM 2.0 credential",
                    scopes: [BuiltInScope.scimProvision], isSystemToken: true),
                caller: user.caller, org: user.org, actor: context.actor, logger: context.logger)
        }
        return controller.secretPage(
            issued, user: user, heading: "SCIM token created", back: back, request: request)
    }

    // MARK: - Audit log

    @Sendable func audit(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try admin(context)
        try Self.dropEmptyParameters(request)
        var query = try AuditController.query(request.uri.queryParameters)
        if request.uri.queryParameters.get("limit") == nil { query.limit = 50 }
        let (events, more) = try await store.withConnection {
            try await AuditRepository($0, logger: context.logger).events(orgID: user.org.id, query: query)
        }
        let shown = events.prefix(query.limit)
        let rows = shown.map { event -> [String: Any] in
            [
                "when": ConsoleController.format(event.occurredAt), "actor": event.actorUsername ?? "—",
                "kind": event.actorKind,
                "action": event.action, "target": event.targetUsername ?? "",
                "token": event.targetTokenID?.uuidString.lowercased() ?? "",
                "source": event.sourceIP ?? "", "details": Self.details(event.details),
            ]
        }
        var data: [String: Any] = [
            "title": "Audit log", "events": rows, "empty": rows.isEmpty, "actor": query.actor ?? "",
            "action": query.action ?? "",
        ]
        if more, let last = shown.last {
            var components = URLComponents()
            components.path = "/console/audit"
            components.queryItems = [("actor", query.actor), ("action", query.action), ("cursor", String(last.id))]
                .compactMap { name, value in value.map { URLQueryItem(name: name, value: $0) } }
            data["nextPage"] = components.string
        }
        return views.page("audit", data, user: user)
    }

    // MARK: - Platform (platform admins)

    func platformAdmin(_ context: ConsoleContext) throws -> ConsoleUser {
        let user = try context.signedIn()
        guard user.isPlatformAdmin else { throw Problem(.forbidden, "Only platform admins can open this page.") }
        return user
    }

    /// Every organization, and users (searchable): create orgs, disable, enable or delete users.
    @Sendable func platform(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try platformAdmin(context)
        try Self.dropEmptyParameters(request)
        let search = request.uri.queryParameters.get("user").map { String($0.prefix(200)) }
        let (orgs, users) = try await store.withConnection { connection in
            (
                try await OrganizationRepository(connection, logger: context.logger).list(memberUserID: nil),
                try await UserRepository(connection, logger: context.logger).search(search: search, limit: 200)
            )
        }
        return views.page(
            "platform",
            [
                "title": "Platform", "userSearch": search ?? "",
                "organizations": orgs.map {
                    ["slug": $0.slug, "name": $0.displayName, "created": ConsoleController.format($0.createdAt)]
                },
                "users": users.map {
                    [
                        "username": $0.username, "status": $0.status.rawValue, "active": $0.status == .active,
                        "platformAdmin": $0.platformAdmin, "isMe": $0.username == user.caller.username,
                    ]
                },
                "noUsers": users.isEmpty,
            ],
            user: user)
    }

    @Sendable func createOrganization(_ request: Request, context: ConsoleContext) async throws -> Response {
        _ = try platformAdmin(context)
        let back = "/console/platform"
        try await flashing(context, back: back) {
            let slug = context.form.text("slug") ?? ""
            _ = try await controller.organizations.create(
                slug: slug, displayName: context.form.text("name"), by: context.actor)
            controller.flash(context, "Organization \(slug) was created. Switch to it to add members.")
        }
        throw ConsoleRedirect(location: back)
    }

    /// Disable (revokes their personal tokens everywhere), enable, or delete a user.
    @Sendable func changeUser(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try platformAdmin(context)
        let username = try context.parameters.require("username")
        let back = "/console/platform"
        try await flashing(context, back: back) {
            guard username != user.caller.username else {
                throw Problem(.badRequest, "You cannot change your own account here.")
            }
            guard let target = try await controller.users.user(named: username) else {
                throw Problem(.notFound, "No user \(username)")
            }
            switch context.form["action"] {
            case "disable":
                try await controller.users.update(target, status: .disabled, platformAdmin: nil, by: context.actor)
                controller.flash(context, "\(username) is disabled; their personal tokens are revoked.")
            case "enable":
                try await controller.users.update(target, status: .active, platformAdmin: nil, by: context.actor)
                controller.flash(context, "\(username) is enabled again (revoked tokens stay revoked).")
            case "delete":
                try await controller.users.delete(target, by: context.actor)
                controller.flash(context, "\(username) was deleted; their personal tokens are revoked.")
            default:
                throw Problem(.badRequest, "Unknown action")
            }
        }
        throw ConsoleRedirect(location: back)
    }

    /// `{"a":"b","c":"d"}` as `a: b, c: d`.
    static func details(_ json: String) -> String {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] else {
            return ""
        }
        return object.keys.sorted().map { "\($0): \(object[$0].map { "\($0)" } ?? "")" }.joined(separator: ", ")
    }

    @discardableResult
    func flashing<T>(_ context: ConsoleContext, back: String, _ body: () async throws -> T) async throws -> T {
        try await controller.flashing(context, back: back, body)
    }
}
