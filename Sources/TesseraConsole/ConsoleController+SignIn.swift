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

/// Signing in (with an API token or OpenID Connect), out, and switching organizations.
extension ConsoleController {
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
            try await AuditRepository(connection, logger: context.logger).record(
                AuditActor(
                    username: token.username, kind: .console, tokenID: token.tokenID, sourceIP: context.remoteAddress
                )
                .event(orgID: token.orgID, action: .consoleSignedIn, details: ["method": "token"]))
        }
        throw ConsoleRedirect(location: Self.nextPath(context.form["next"]) ?? "/console/my-token")
    }

    /// Where to go after signing in: a console path only.
    static func nextPath(_ path: String?) -> String? {
        guard let path, isSameOriginPath(path), path != "/console/sign-in" else { return nil }
        return path
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
        let identity: OIDCIdentity
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
            identity = try await oidc.finish(code: code, pending: pending, redirectURI: redirectURI(request))
        } catch let error as OIDCError {
            var response = signInResponse(request, message: error.description, isError: true, status: .badRequest)
            response.setCookie(Self.expired(Self.oidcCookie, path: "/console/oidc"))
            return response
        }
        let username = identity.username
        // The IdP's groups: memberships of orgs with a group mapping follow them (JIT when on).
        if let groups = identity.groups {
            try await SSOGroupSync(store: store, justInTime: oidc.settings.justInTime).apply(
                username: username, groups: groups,
                actor: AuditActor(username: username, kind: .console, sourceIP: context.remoteAddress),
                logger: context.logger)
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
            try await OrganizationRepository($0, logger: context.logger).list(memberUserID: user.id)
        }
        try await startSession(
            request, context,
            ConsoleSession(
                username: user.username, method: "oidc", tokenHash: nil, csrf: ConsoleSession.newCSRFToken(),
                signedInAt: store.clock.now(), org: orgs.first?.slug))
        try await store.withConnection { connection in
            try await AuditRepository(connection, logger: context.logger).record(
                AuditActor(username: user.username, kind: .console, sourceIP: context.remoteAddress)
                    .event(orgID: orgs.first?.id, action: .consoleSignedIn, details: ["method": "oidc"]))
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
}
