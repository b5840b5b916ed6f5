import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import Logging
import NIOCore
import TesseraCore
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
    var logins: CLILoginService { CLILoginService(store: store) }
    var users: UserService { UserService(store: store) }
    var organizations: OrganizationService { OrganizationService(store: store) }
    var members: MemberService { MemberService(store: store) }

    init(
        store: TesseraStore, views: ConsoleViews, settings: ConsoleSettings, sessionDriver: PostgresSessionDriver,
        webhookTargets: WebhookTargetPolicy = WebhookTargetPolicy(allowPrivate: false)
    ) {
        self.store = store
        self.webhooks = WebhookService(store: store, policy: webhookTargets)
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
        // Anything else under /console/ is a page too: a readable 404, not a problem document.
        console.get("**") { _, _ -> Response in throw Problem(.notFound, "There is no such page in the console.") }
    }

    // MARK: - Static files and sign-in

    @Sendable func staticFile(_ request: Request, context: ConsoleContext) throws -> Response {
        guard let name = context.parameters.get("file"), let file = views.files[name] else {
            throw Problem(.notFound, "No such file")
        }
        return Response(
            status: .ok, headers: [.contentType: file.type, .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: file.body))
    }

    static let endedMessages = [
        "token": "Your session ended: the token you signed in with no longer works (revoked, deactivated or expired).",
        "expired": "Your session ended after its maximum lifetime. Sign in again.",
        "user": "Your session ended: your account is disabled or was removed.",
        "signed-out": "You are signed out.",
    ]

    @Sendable func signInPage(_ request: Request, context: ConsoleContext) throws -> Response {
        if context.sessions.session != nil { throw ConsoleRedirect(location: "/console/my-token") }
        let ended =
            request.uri.queryParameters.get("ended").flatMap { Self.endedMessages[$0] }
            ?? (request.uri.queryParameters.get("next") != nil ? "Sign in to continue." : nil)
        return signInResponse(
            request, message: ended, isError: ended != nil && request.uri.queryParameters.get("ended") != "signed-out")
    }

    /// The sign-in form, with a fresh double-submit CSRF cookie when there is none.
    func signInResponse(_ request: Request, message: String?, isError: Bool, status: HTTPResponse.Status = .ok)
        -> Response
    {
        let csrf = request.cookies[CSRFMiddleware.preSessionCookie]?.value ?? ConsoleSession.newCSRFToken()
        var data: [String: Any] = ["title": "Sign in", "csrf": csrf, "oidc": oidc != nil]
        if let next = Self.nextPath(request.uri.queryParameters.get("next")) { data["next"] = next }
        if let message { data["message"] = ["text": message, "error": isError] }
        var response = views.page("sign-in", data, user: nil, status: status)
        response.setCookie(
            Cookie(
                name: CSRFMiddleware.preSessionCookie, value: csrf, path: "/console",
                secure: (settings.secureCookies ?? false),
                httpOnly: true, sameSite: .strict))
        return response
    }

    /// Sign in with a personal API token: identity only (roles come from the database). The
    /// session keeps the token's hash, so it ends when the token stops verifying.
    @Sendable func signIn(_ request: Request, context: ConsoleContext) async throws -> Response {
        guard let presented = context.form.text("token") else {
            return signInResponse(
                request, message: "Paste your API token to sign in.", isError: true, status: .badRequest)
        }
        let outcome = try await store.verify(presented)
        let token: VerifiedToken
        switch outcome {
        case .failure(let failure):
            return signInResponse(
                request, message: "That token does not work. \(failure.description).", isError: true,
                status: .unauthorized)
        case .success(let verified):
            token = verified
        }
        guard token.kind == .personal else {
            return signInResponse(
                request,
                message: "Organization tokens belong to services, not people: sign in with your personal token.",
                isError: true, status: .unauthorized)
        }
        try await startSession(
            request, context,
            ConsoleSession(
                username: token.username, method: "token", tokenHash: TokenHash(of: presented).hex,
                csrf: ConsoleSession.newCSRFToken(), signedInAt: store.clock.now(), org: token.orgSlug))
        try await store.withConnection { connection in
            try await connection.recordAudit(
                AuditActor(
                    username: token.username, kind: .console, tokenID: token.tokenID, sourceIP: context.remoteAddress
                )
                .event(orgID: token.orgID, action: .consoleSignedIn, details: ["method": "token"]),
                logger: context.logger)
        }
        throw ConsoleRedirect(location: Self.nextPath(context.form["next"]) ?? "/console/my-token")
    }

    /// Where to go after signing in: a console path only.
    static func nextPath(_ path: String?) -> String? {
        guard let path, isSameOriginPath(path), path != "/console/sign-in" else { return nil }
        return path
    }

    // MARK: - Browser login for command-line clients

    /// The page `bentoml cloud login` and `tessera login --web` open: the code, which client asks,
    /// and an approval that creates a personal token for you (delivered to the client, once).
    @Sendable func cliLoginPage(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        guard let raw = request.uri.queryParameters.get("code"), let code = CLILoginService.normalize(raw) else {
            throw Problem(.badRequest, "This login link has no valid code. Start the login again from your terminal.")
        }
        guard let pending = try await logins.pending(code, logger: context.logger) else {
            throw Problem(
                .notFound,
                "This login code is unknown, expired or already used. Start the login again from your terminal.")
        }
        let live = try await store.withConnection { connection -> Int in
            try await connection.tokens(
                orgID: user.org.id, visibleTo: user.caller.userID, all: false,
                query: TokenQuery(limit: 1000, kind: .personal), logger: context.logger
            ).records.filter { $0.status != .revoked }.count
        }
        let atLimit = live >= user.org.personalTokenLimit
        let display = CLILoginService.display(code)
        return views.page(
            "cli-login",
            [
                "title": "Approve a command-line login", "code": display, "client": pending.client,
                "from": pending.sourceIP ?? "unknown",
                "asked": Self.format(pending.createdAt), "approved": pending.approved,
                "atLimit": atLimit && !pending.approved,
                "limit": user.org.personalTokenLimit,
                "mayCreate": user.caller.role != nil && (user.isAdmin || user.org.userTokensEnabled),
                "tokenName": "CLI login " + Self.format(store.clock.now()),
            ],
            user: user)
    }

    @Sendable func cliLogin(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        guard let code = context.form["code"].flatMap(CLILoginService.normalize) else {
            throw Problem(.badRequest, "No valid code")
        }
        let back = "/console/cli-login?code=" + code
        if context.form["decision"] == "deny" {
            try await logins.deny(code, logger: context.logger)
            flash(context, "The login was denied; the code no longer works.")
            throw ConsoleRedirect(location: "/console/my-token")
        }
        let name = context.form.text("name") ?? "CLI login"
        try await flashing(context, back: back) {
            try Limits.checkName(name, field: "Name")
            guard let userID = user.caller.userID, user.caller.role != nil else {
                throw Problem(
                    .forbidden, "You are not a member of \(user.org.slug): switch to an organization of yours")
            }
            guard
                try await logins.approve(
                    code, userID: userID, org: user.org, tokenName: name, actor: context.actor, logger: context.logger)
            else {
                throw Problem(
                    .notFound,
                    "This login code is unknown, expired or already used. Start the login again from your terminal.")
            }
        }
        flash(
            context,
            "Approved. Your terminal receives a new personal token “\(name)” in \(user.org.slug); you can close this page."
        )
        throw ConsoleRedirect(location: "/console/my-token")
    }

    // MARK: - OpenID Connect

    static let oidcCookie = "tessera_oidc"

    func redirectURI(_ request: Request) -> String {
        let origin =
            settings.oidc?.publicURL
            ?? ((settings.secureCookies ?? false ? "https://" : "http://") + (request.head.authority ?? "127.0.0.1"))
        return (origin.hasSuffix("/") ? String(origin.dropLast()) : origin) + "/console/oidc/callback"
    }

    /// "Sign in with SSO": state, nonce and PKCE verifier into a short HttpOnly cookie, then off
    /// to the provider with the S256 challenge.
    @Sendable func oidcStart(_ request: Request, context: ConsoleContext) async throws -> Response {
        guard let oidc else { throw Problem(.notFound, "Single sign-on is not configured on this server") }
        let pending = OIDCPending.make(now: store.clock.now())
        let location: String
        do {
            location = try await oidc.authorizationURL(pending, redirectURI: redirectURI(request))
        } catch let error as OIDCError {
            return signInResponse(request, message: error.description, isError: true, status: .badGateway)
        }
        var response = Response(status: .seeOther, headers: [.location: location])
        response.setCookie(
            Cookie(
                name: Self.oidcCookie, value: pending.cookieValue, maxAge: 600, path: "/console/oidc",
                secure: settings.secureCookies ?? false, httpOnly: true, sameSite: .lax))
        return response
    }

    /// The provider's answer: the state must match the cookie's, the code is exchanged with the
    /// verifier, the ID token verified (issuer, audience, expiry, nonce); the user must exist in
    /// Tessera (identity only: roles come from the database).
    @Sendable func oidcCallback(_ request: Request, context: ConsoleContext) async throws -> Response {
        guard let oidc else { throw Problem(.notFound, "Single sign-on is not configured on this server") }
        let parameters = request.uri.queryParameters
        let cookie = request.cookies[Self.oidcCookie].flatMap { OIDCPending(cookieValue: $0.value) }
        let username: String
        do {
            if let error = parameters.get("error") {
                throw OIDCError.providerRefused(parameters.get("error_description") ?? error)
            }
            guard let pending = cookie, let state = parameters.get("state"), constantTimeEquals(state, pending.state)
            else {
                throw OIDCError.stateMismatch
            }
            guard store.clock.now().timeIntervalSince(pending.createdAt) < 600 else { throw OIDCError.expired }
            guard let code = parameters.get("code"), !code.isEmpty, code.count < 4096 else {
                throw OIDCError.providerRefused("no authorization code")
            }
            username = try await oidc.finish(code: code, pending: pending, redirectURI: redirectURI(request))
        } catch let error as OIDCError {
            var response = signInResponse(request, message: error.description, isError: true, status: .badRequest)
            response.setCookie(Self.expired(Self.oidcCookie, path: "/console/oidc"))
            return response
        }
        let user = try await users.user(named: username)
        guard let user, user.status == .active else {
            return signInResponse(
                request,
                message:
                    "Signed in as \(username), but there is no active Tessera account by that name: ask an organization admin to add you.",
                isError: true, status: .forbidden)
        }
        let orgs = try await store.withConnection {
            try await $0.organizations(memberUserID: user.id, logger: context.logger)
        }
        try await startSession(
            request, context,
            ConsoleSession(
                username: user.username, method: "oidc", tokenHash: nil, csrf: ConsoleSession.newCSRFToken(),
                signedInAt: store.clock.now(), org: orgs.first?.slug))
        try await store.withConnection { connection in
            try await connection.recordAudit(
                AuditActor(username: user.username, kind: .console, sourceIP: context.remoteAddress)
                    .event(orgID: orgs.first?.id, action: .consoleSignedIn, details: ["method": "oidc"]),
                logger: context.logger)
        }
        var response = Response(status: .seeOther, headers: [.location: "/console/my-token"])
        response.setCookie(Self.expired(Self.oidcCookie, path: "/console/oidc"))
        return response
    }

    static func expired(_ name: String, path: String) -> Cookie {
        Cookie(name: name, value: "", expires: Date(timeIntervalSince1970: 0), path: path, httpOnly: true)
    }

    /// A new session id at every sign-in; the row of any session the browser still had is deleted.
    func startSession(_ request: Request, _ context: ConsoleContext, _ session: ConsoleSession) async throws {
        if let old = request.cookies[Self.cookieName]?.value {
            try await sessionDriver.remove(key: "hbs." + old)
        }
        context.sessions.createSession(session, expiresIn: settings.idleTimeout)
    }

    /// Deletes the session row and expires the cookie.
    @Sendable func signOut(_ request: Request, context: ConsoleContext) async throws -> Response {
        context.sessions.clearSession()
        throw ConsoleRedirect(location: "/console/sign-in?ended=signed-out")
    }

    @Sendable func switchOrg(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        guard let slug = context.form.text("org") else { throw Problem(.notFound, "Organization not found") }
        var allowed = user.organizations.contains { $0.slug == slug }
        if !allowed && user.isPlatformAdmin { allowed = try await organizations.organization(slug: slug) != nil }
        guard allowed else { throw Problem(.notFound, "Organization not found") }
        context.sessions.withLockedSession { $0?.org = slug }
        throw ConsoleRedirect(
            location: isSameOriginPath(context.form["back"] ?? "") ? context.form["back"]! : "/console/my-token")
    }

    // MARK: - Tokens

    @Sendable func myToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let page = try await store.withConnection { connection in
            try await connection.tokens(
                orgID: user.org.id, visibleTo: user.caller.userID, all: false,
                query: TokenQuery(limit: 100, kind: .personal),
                logger: context.logger)
        }
        // Revoked tokens (deleted, rotated away, cascaded) are history: the audit log keeps them.
        let live = page.records.filter { $0.status != .revoked }
        let mayCreate = user.caller.role != nil && (user.isAdmin || user.org.userTokensEnabled)
        var data: [String: Any] = [
            "title": "My token", "tokens": live.map { row($0, user) }, "empty": live.isEmpty,
            "mayCreate": mayCreate, "back": "/console/my-token",
        ]
        if user.caller.role == nil {
            data["notMember"] = true
        } else if !mayCreate {
            data["disabled"] = true
        }
        data.merge(try await createForm(user, context: context)) { _, new in new }
        return views.page("my-token", data, user: user)
    }

    @Sendable func createMyToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let issued = try await flashing(context, back: "/console/my-token") {
            let body = try await createRequest(context.form, user: user, context: context)
            return try await operations.createOwn(
                body, caller: user.caller, org: user.org, actor: context.actor, logger: context.logger)
        }
        return secretPage(issued, user: user, heading: "Token created", back: "/console/my-token", request: request)
    }

    @Sendable func orgTokens(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        try ConsoleAdminPages.dropEmptyParameters(request)
        let parameters = request.uri.queryParameters
        var query = try TokenController.listQuery(parameters)
        if parameters.get("limit") == nil { query.limit = 25 }
        let kind = parameters.get("kind")
        if kind == nil { query.kind = .organization }
        if kind == "all" { query.kind = nil }
        if query.kind == .personal && !user.isAdmin { query.kind = .organization }
        let page = try await operations.list(caller: user.caller, query: query, logger: context.logger)
        func link(cursor: String?) -> String {
            var items: [(String, String)] = []
            if let search = query.search { items.append(("search", search)) }
            if let raw = parameters.get("kind") { items.append(("kind", raw)) }
            if let status = query.status { items.append(("status", status.rawValue)) }
            if query.ascending { items.append(("sort", "createdDate")) }
            if parameters.get("limit") != nil { items.append(("limit", String(query.limit))) }
            if let cursor { items.append(("cursor", cursor)) }
            var components = URLComponents()
            components.path = "/console/org-tokens"
            components.queryItems = items.isEmpty ? nil : items.map { URLQueryItem(name: $0.0, value: $0.1) }
            return components.string ?? "/console/org-tokens"
        }
        let back = link(cursor: parameters.get("cursor"))
        var data: [String: Any] = [
            "title": "Organization tokens", "tokens": page.records.map { row($0, user) }, "empty": page.records.isEmpty,
            "search": query.search ?? "", "back": back, "filtered": query.search != nil || query.status != nil,
            "kindOptions": [
                ("organization", "Organization tokens"), ("personal", "Personal tokens"), ("all", "All tokens"),
            ]
            .filter { user.isAdmin || $0.0 == "organization" }
            .map { ["value": $0.0, "label": $0.1, "selected": (kind ?? "organization") == $0.0] },
            "statusOptions": [
                ("", "Any status"), ("active", "Active"), ("inactive", "Inactive"), ("revoked", "Revoked"),
            ]
            .map { ["value": $0.0, "label": $0.1, "selected": (query.status?.rawValue ?? "") == $0.0] },
            "sortOptions": [("-createdDate", "Newest first"), ("createdDate", "Oldest first")]
                .map {
                    [
                        "value": $0.0, "label": $0.1,
                        "selected": (query.ascending ? "createdDate" : "-createdDate") == $0.0,
                    ]
                },
        ]
        if let next = page.next { data["nextPage"] = link(cursor: TokenController.cursor(next)) }
        if parameters.get("cursor") != nil { data["firstPage"] = link(cursor: nil) }
        if user.isAdmin { data.merge(try await createForm(user, context: context)) { _, new in new } }
        return views.page("org-tokens", data, user: user)
    }

    @Sendable func createOrgToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = "/console/org-tokens"
        let issued = try await flashing(context, back: back) {
            guard let label = context.form.text("label") else {
                throw Problem.invalidField(
                    "label", "is required: the service or pipeline that will use the token, e.g. ci-deploy")
            }
            var body = try await createRequest(context.form, user: user, context: context)
            body.isSystemToken = true
            return try await operations.createFor(
                label, body, caller: user.caller, org: user.org, actor: context.actor, logger: context.logger)
        }
        return secretPage(issued, user: user, heading: "Organization token created", back: back, request: request)
    }

    @Sendable func setStatus(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = backPath(context)
        try await flashing(context, back: back) {
            let record = try await token(context, user)
            let status: TokenStatus = context.form["status"] == "active" ? .active : .inactive
            _ = try await operations.update(
                record, name: nil, description: nil, status: status, caller: user.caller, actor: context.actor,
                logger: context.logger)
            flash(context, "Token “\(record.name)” is now \(status == .active ? "active" : "inactive").")
        }
        throw ConsoleRedirect(location: back)
    }

    @Sendable func rotate(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = backPath(context)
        let issued = try await flashing(context, back: back) {
            let record = try await token(context, user)
            let overlap = Int(context.form["overlap"] ?? "0") ?? -1
            return try await operations.rotate(
                record, overlapSeconds: overlap, caller: user.caller, actor: context.actor, logger: context.logger)
        }
        return secretPage(issued, user: user, heading: "Token rotated", back: back, request: request)
    }

    @Sendable func confirmDelete(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back =
            request.uri.queryParameters.get("back").flatMap { isSameOriginPath($0) ? $0 : nil } ?? "/console/my-token"
        let record = try await token(context, user)
        guard operations.mayManage(record, caller: user.caller) else { throw TokenService.tokenNotFound }
        return views.page(
            "confirm-delete",
            [
                "title": "Delete token", "token": row(record, user), "back": back,
                "consequence": record.kind == .organization
                    ? "Everything that uses it (CI pipelines, services labelled \(record.username)) will be refused at once."
                    : "Anything that uses it will be refused at once. You can create a new token afterwards.",
            ],
            user: user)
    }

    @Sendable func delete(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = backPath(context)
        try await flashing(context, back: back) {
            let record = try await token(context, user)
            try await operations.delete(record, caller: user.caller, actor: context.actor, logger: context.logger)
            flash(context, "Token “\(record.name)” was deleted; it no longer works.")
        }
        throw ConsoleRedirect(location: back)
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
            try await $0.scopeCatalog(orgID: user.org.id, logger: context.logger)
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
        return ["lifetimes": lifetimes, "scopeChoices": scopes]
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
        return body
    }
}
