import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import Logging
import NIOCore
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraVerification

/// DESIGN §8 headers on every console response, errors included: a CSP with no inline script
/// (scripts and styles only from this server), no framing, no sniffing, no caching (pages show
/// token metadata, and a create or rotate page shows a secret).
struct ConsoleHeadersMiddleware: RouterMiddleware {
    typealias Context = ConsoleContext

    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response = try await next(request, context)
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        response.headers[HTTPField.Name("Cross-Origin-Opener-Policy")!] = "same-origin"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }
}

/// Turns a thrown ``ConsoleRedirect`` into a 303. Sits inside the session middleware, which saves
/// a session only when the inner chain returns a response: a sign-in, sign-out or message made
/// just before a redirect is kept.
struct ConsoleRedirectMiddleware: RouterMiddleware {
    typealias Context = ConsoleContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let redirect as ConsoleRedirect {
            return Response(status: .seeOther, headers: [.location: redirect.location])
        }
    }
}

/// Turns what console handlers throw into pages: a problem into a page showing its detail with
/// its status, anything else into a plain "something went wrong" page (logged, never shown).
struct ConsoleErrorMiddleware: RouterMiddleware {
    typealias Context = ConsoleContext
    let views: ConsoleViews

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await Problem.mappingDomainErrors { try await next(request, context) }
        } catch let problem as Problem {
            return views.errorPage(status: problem.status, message: problem.detail)
        } catch let error as HTTPError {
            return views.errorPage(
                status: error.status,
                message: error.status == .contentTooLarge
                    ? "The form is too large." : (error.body ?? error.status.reasonPhrase))
        } catch {
            if isDatabaseUnavailable(error) {
                return views.errorPage(
                    status: .serviceUnavailable, message: "The database is unavailable. Try again in a moment.")
            }
            context.logger.error("console request failed", metadata: ["error": "\(String(reflecting: error))"])
            return views.errorPage(status: .internalServerError, message: "Something went wrong. It has been logged.")
        }
    }
}

/// CSRF protection on every state change (POST): a cross-site `Sec-Fetch-Site` or a foreign
/// `Origin` is refused, then the form's `csrf` field (or an `X-CSRF-Token` header) must equal,
/// compared in constant time, the session's token, or before sign-in the `tessera_csrf` cookie
/// the sign-in page set (double submit). Reads the form once into the context.
struct CSRFMiddleware: RouterMiddleware {
    typealias Context = ConsoleContext
    static let preSessionCookie = "tessera_csrf"
    static let refused = Problem(
        .forbidden, "This form expired or came from another site. Reload the page and try again.")

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard request.method == .post || request.method == .put || request.method == .patch || request.method == .delete
        else {
            return try await next(request, context)
        }
        if request.headers[HTTPField.Name("Sec-Fetch-Site")!] == "cross-site" { throw Self.refused }
        if let origin = request.headers[.origin], !Self.isSameOrigin(origin, authority: request.head.authority) {
            throw Self.refused
        }
        var request = request
        var context = context
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        context.form = Form(body)
        let presented = context.form["csrf"] ?? request.headers[HTTPField.Name("X-CSRF-Token")!]
        // The session's token; or the sign-in form's double-submit cookie (also when a session
        // cookie is present: signing in again replaces that session).
        let expected = [context.sessions.session?.csrf, request.cookies[Self.preSessionCookie]?.value].compactMap { $0 }
        guard let presented, expected.contains(where: { !$0.isEmpty && constantTimeEquals(presented, $0) }) else {
            throw Self.refused
        }
        return try await next(request, context)
    }

    /// `Origin: scheme://host[:port]` names this server (the request's authority).
    static func isSameOrigin(_ origin: String, authority: String?) -> Bool {
        guard let authority, let url = URL(string: origin), let host = url.host,
            url.scheme == "http" || url.scheme == "https"
        else { return false }
        let port = url.port.map { ":\($0)" } ?? ""
        let candidate = (host.contains(":") ? "[\(host)]" : host) + port
        return candidate.lowercased() == authority.lowercased()
            || (url.port == nil
                && authority.lowercased() == candidate.lowercased() + (url.scheme == "https" ? ":443" : ":80"))
    }
}

/// Signed-in pages: loads the person behind the session, or sends the browser to sign in. A
/// session ends (row deleted) past its absolute lifetime, when the user is disabled or deleted, and,
/// for token sign-ins, as soon as the token stops verifying (revoked, expired, deactivated, owner
/// gone). The idle expiry moves forward as the session is used (every five minutes at most).
struct ConsoleUserMiddleware: RouterMiddleware {
    typealias Context = ConsoleContext
    let store: TesseraStore
    let settings: ConsoleSettings

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard let session = context.sessions.session else {
            // Back here after signing in (the login page a command-line client opened, say).
            let path = request.uri.description
            guard request.method == .get, isSameOriginPath(path), path.count < 500 else { throw ConsoleRedirect.signIn }
            var components = URLComponents()
            components.path = "/console/sign-in"
            components.queryItems = [URLQueryItem(name: "next", value: path)]
            throw ConsoleRedirect(location: components.string ?? "/console/sign-in")
        }
        let now = store.clock.now()
        func end(_ reason: String) -> ConsoleRedirect {
            context.sessions.clearSession()
            return ConsoleRedirect(location: "/console/sign-in?ended=\(reason)")
        }
        if now.timeIntervalSince(session.signedInAt) > Double(settings.absoluteTimeout.components.seconds) {
            throw end("expired")
        }
        if let hex = session.tokenHash {
            guard let hash = TokenHash(hex: hex),
                let state = try await store.storedState(of: hash), case .success = state.verify(at: now)
            else { throw end("token") }
        }
        let logger = context.logger
        let resolved: ConsoleUser? = try await store.withConnection { connection in
            guard let user = try await UserRepository(connection, logger: logger).find(username: session.username),
                user.status == .active
            else { return nil }
            let organizations = try await OrganizationRepository(connection, logger: logger).list(memberUserID: user.id)
            var org = organizations.first { $0.slug == session.org } ?? organizations.first
            if user.platformAdmin, let wanted = session.org, org?.slug != wanted {
                org = try await OrganizationRepository(connection, logger: logger).find(slug: wanted) ?? org
            }
            guard let org else {
                throw Problem(
                    .forbidden, "You are not a member of any organization yet. Ask an organization admin to add you.")
            }
            let membership = try await MembershipRepository(connection, logger: logger).acting(
                orgID: org.id, userID: user.id)
            let caller = Caller(
                credential: .jwt, userID: user.id, username: user.username, platformAdmin: user.platformAdmin,
                orgID: org.id, orgSlug: org.slug, role: membership?.role, groups: membership?.groups ?? [])
            return ConsoleUser(session: session, caller: caller, org: org, organizations: organizations)
        }
        guard let resolved else { throw end("user") }
        var context = context
        context.user = resolved
        let renew = now.timeIntervalSince(session.renewedAt ?? session.signedInAt) > 300
        if renew || (request.method == .get && session.flash != nil) {
            context.sessions.withLockedSession { stored in
                if renew {
                    stored?.expiresIn = settings.idleTimeout
                    stored?.renewedAt = now
                }
                if request.method == .get { stored?.flash = nil }  // shown once, on the page this request renders
            }
        }
        return try await next(request, context)
    }
}
