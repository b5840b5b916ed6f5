import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import Logging
import NIOCore
import TesseraCore
import TesseraFederation
import TesseraHTTP
import TesseraPostgres
import TesseraServices
import TesseraVerification
import TesseraWebhooks

/// The web console under `/console/` (DESIGN §8): server-rendered pages that work without
/// JavaScript, calling the same services as the API (``TokenService``, ``MemberService``,
/// ``OrganizationService``, …), audited with actor kind `console`.
/// Every change is a POST (CSRF-checked) answered by a redirect (POST-redirect-GET), except
/// create and rotate, whose answer is the page showing the new secret once.
struct ConsoleController {
    let store: TesseraStore
    let views: ConsoleViews
    let settings: ConsoleSettings
    let sessionDriver: PostgresSessionDriver
    let oidc: OIDCClient?
    var operations: TokenService { TokenService(store: store) }
    let webhooks: WebhookService
    let trustPolicies: TrustPolicyService
    var logins: CLILoginService { CLILoginService(store: store) }
    var users: UserService { UserService(store: store) }
    var organizations: OrganizationService { OrganizationService(store: store) }
    var members: MemberService { MemberService(store: store) }

    init(
        store: TesseraStore, views: ConsoleViews, settings: ConsoleSettings, sessionDriver: PostgresSessionDriver,
        webhookTargets: WebhookTargetPolicy = WebhookTargetPolicy(allowPrivate: false),
        federation: FederationSettings = FederationSettings()
    ) {
        self.store = store
        self.webhooks = WebhookService(store: store, policy: webhookTargets)
        self.trustPolicies = TrustPolicyService(store: store, settings: federation)
        self.views = views
        self.settings = settings
        self.sessionDriver = sessionDriver
        self.oidc = settings.oidc.map(OIDCClient.init(settings:))
    }

    static let cookieName = "tessera_session"

    func addRoutes(to router: Router<TesseraRequestContext>) {
        let console = router.group("console", context: ConsoleContext.self)
            .add(middleware: ConsoleHeadersMiddleware())
            .add(middleware: ConsoleErrorMiddleware(views: views))
            .add(
                middleware: SessionMiddleware<ConsoleContext>(
                    storage: sessionDriver,
                    configuration: .init(
                        sessionCookieParameters: .init(
                            name: Self.cookieName, path: "/console", secure: (settings.secureCookies ?? false),
                            sameSite: .lax),
                        defaultSessionExpiration: settings.idleTimeout))
            )
            .add(middleware: ConsoleRedirectMiddleware())
            .add(middleware: CSRFMiddleware())
        console.get { _, context -> Response in
            throw ConsoleRedirect(location: context.sessions.session == nil ? "/console/sign-in" : "/console/my-token")
        }
        console.get("static/:file", use: staticFile)
        console.get("sign-in", use: signInPage)
        console.post("sign-in", use: signIn)
        console.post("sign-out", use: signOut)
        // A link, not a form: CSP's form-action would stop a form's redirect to the provider, and
        // starting a sign-in changes nothing (the state cookie binds the callback to this browser).
        console.get("oidc/start", use: oidcStart)
        console.get("oidc/callback", use: oidcCallback)

        let pages = console.group().add(middleware: ConsoleUserMiddleware(store: store, settings: settings))
        pages.post("org", use: switchOrg)
        pages.get("my-token", use: myToken)
        pages.post("my-token", use: createMyToken)
        pages.get("org-tokens", use: orgTokens)
        pages.post("org-tokens", use: createOrgToken)
        pages.post("tokens/:id/status", use: setStatus)
        pages.post("tokens/:id/rotate", use: rotate)
        pages.get("tokens/:id/delete", use: confirmDelete)
        pages.post("tokens/:id/delete", use: delete)
        pages.get("cli-login", use: cliLoginPage)
        pages.post("cli-login", use: cliLogin)
        ConsoleAdminPages(controller: self).addRoutes(to: pages)
        ConsoleWebhookPages(controller: self).addRoutes(to: pages)
        ConsoleTrustPages(controller: self).addRoutes(to: pages)
        ConsoleUsagePages(controller: self).addRoutes(to: pages)
        // Anything else under /console/ is a page too: a readable 404, not a problem document.
        console.get("**") { _, _ -> Response in throw Problem(.notFound, "There is no such page in the console.") }
    }

    // MARK: - Helpers

    /// The secret, once, in the answer to the POST itself: never stored, never cached.
    func secretPage(
        _ issued: TokenService.Issued, user: ConsoleUser, heading: String, back: String, request: Request
    ) -> Response {
        let origin =
            ((settings.secureCookies ?? false) ? "https://" : "http://") + (request.head.authority ?? "127.0.0.1")
        var response = views.page(
            "token-secret",
            [
                "title": heading, "heading": heading, "secret": issued.secret.plaintext,
                "token": row(issued.record, user), "back": back,
                "origin": origin,
            ],
            user: user)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    func token(_ context: ConsoleContext, _ user: ConsoleUser) async throws -> TokenRecord {
        guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            throw TokenService.tokenNotFound
        }
        return try await operations.visible(id, caller: user.caller, logger: context.logger)
    }

    func backPath(_ context: ConsoleContext) -> String {
        let back = context.form["back"] ?? ""
        return isSameOriginPath(back) ? back : "/console/my-token"
    }

    /// Runs a change; a refusal (a problem) becomes a message on the page the form came from.
    @discardableResult
    func flashing<T>(_ context: ConsoleContext, back: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await Problem.mappingDomainErrors(body)
        } catch let problem as Problem where problem.status.code < 500 {
            flash(
                context,
                problem.errors.isEmpty
                    ? problem.detail : problem.errors.map { "\($0.field) \($0.message)" }.joined(separator: "; "),
                error: true)
            throw ConsoleRedirect(location: back)
        }
    }

    func flash(_ context: ConsoleContext, _ text: String, error: Bool = false) {
        context.sessions.withLockedSession { $0?.flash = .init(text: text, isError: error) }
    }

    /// A token as the templates show it.
    func row(_ record: TokenRecord, _ user: ConsoleUser) -> [String: Any] {
        let now = store.clock.now()
        let state: String
        if record.status == .revoked {
            state = "revoked"
        } else if record.isExpired(at: now) {
            state = "expired"
        } else {
            state = record.status.rawValue
        }
        let manageable = operations.mayManage(record, caller: user.caller) && record.status != .revoked
        return [
            "id": record.id.uuidString.lowercased(), "name": record.name, "description": record.description ?? "",
            "kind": record.kind == .organization ? "organization" : "personal", "username": record.username,
            "prefix": record.tokenPrefix, "state": state, "scopes": record.scopes.joined(separator: " "),
            "expires": record.expiresAt.map(Self.format) ?? "never",
            "lastUsed": record.lastUsedAt.map(Self.format) ?? "never",
            "created": Self.format(record.createdAt), "createdBy": record.createdBy,
            "manageable": manageable, "isActive": record.status == .active,
            "rotatable": manageable && !record.isExpired(at: now),
        ]
    }

    static func format(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return formatter.string(from: date)
    }

    /// The fields of a create form: lifetimes the org allows, scopes from its catalog.
    func createForm(_ user: ConsoleUser, context: ConsoleContext) async throws -> [String: Any] {
        let catalog = try await store.withConnection {
            try await OrganizationRepository($0, logger: context.logger).scopeCatalog(orgID: user.org.id)
        }
        let org = user.org
        var lifetimes: [[String: Any]] = [
            ["value": "", "label": "Organization default (\(org.defaultTokenLifetimeDays) days)", "selected": true]
        ]
        for days in [7, 30, 60, 90, 180, 365] where org.maxTokenLifetimeDays.map({ days <= $0 }) ?? true {
            lifetimes.append(["value": String(days), "label": "\(days) days", "selected": false])
        }
        if org.allowNonExpiringTokens && org.maxTokenLifetimeDays == nil {
            lifetimes.append(["value": "never", "label": "Never", "selected": false])
        }
        let scopes = catalog.sorted { $0.name < $1.name }
            .filter { !$0.adminOnly || user.isAdmin }
            .filter { $0.name != "platform:admin" || user.isPlatformAdmin }
            .map { entry -> [String: Any] in
                [
                    "name": entry.name, "description": entry.description,
                    "checked": org.defaultScopes.contains(entry.name),
                    "fieldID": "scope-" + entry.name.map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined(),
                ]
            }
        let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]
        return [
            "lifetimes": lifetimes, "scopeChoices": scopes,
            "ruleRows": (1...3).map {
                ["index": $0, "methods": methods.map { ["value": $0, "label": $0 == "*" ? "any" : $0] }]
            },
        ]
    }

    func createRequest(_ form: Form, user: ConsoleUser, context: ConsoleContext) async throws
        -> TokenService.CreateRequest
    {
        var body = TokenService.CreateRequest(name: form.text("name") ?? "")
        body.description = form.text("description")
        let scopes = form.all("scopes")
        body.scopes = scopes.isEmpty ? nil : scopes
        switch form.text("expires") {
        case nil: break
        case "never": body.neverExpires = true
        case let days?:
            guard let count = Int(days), (1...36_500).contains(count) else {
                throw Problem.invalidField("expires", "is not a lifetime")
            }
            body.tokenExpiration = Int64(store.clock.now().timeIntervalSince1970) + Int64(count) * 86_400 - 60
        }
        // The rule editor: a row with a path is a rule; blank rows are ignored.
        var rules: [(method: String, path: String, host: String?)] = []
        for (method, (path, host)) in zip(form.all("rule-method"), zip(form.all("rule-path"), form.all("rule-host"))) {
            let path = path.trimmingCharacters(in: .whitespaces)
            let host = host.trimmingCharacters(in: .whitespaces)
            if path.isEmpty {
                if !host.isEmpty { throw Problem.invalidField("accessRules", "a rule with a host needs a path") }
                continue
            }
            rules.append((method, path, host.isEmpty ? nil : host))
        }
        if !rules.isEmpty { body.accessRules = rules }
        let cidrs = (form.text("cidrs") ?? "").split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" })
            .map(String.init)
        if !cidrs.isEmpty { body.allowedCidrs = cidrs }
        return body
    }
}
