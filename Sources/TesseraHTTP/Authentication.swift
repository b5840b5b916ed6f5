import HTTPTypes
import Hummingbird
import TesseraCore
import TesseraPostgres
import TesseraServices
import TesseraVerification

/// A credential as presented, before any lookup.
enum PresentedCredential: Equatable {
    case apiToken(String)
    case bearer(String)

    var value: String {
        switch self {
        case .apiToken(let value), .bearer(let value): value
        }
    }

    /// `Authorization: Bearer <t>` (any scheme case), a bare `Authorization: <t>` (LISA), or
    /// `Api-Key: <t>` (LISA's serving API), or `X-YATAI-API-TOKEN: <t>` (BentoCloud's clients). Pure Swift on purpose: Foundation's trimming bridges
    /// through NSString and cost a fifth of the whole verify path.
    static func extract(from headers: HTTPFields) -> PresentedCredential? {
        if let apiKey = headers[.apiKey].map(trimmed), !apiKey.isEmpty {
            return .apiToken(String(apiKey))
        }
        if let yatai = headers[.yataiToken].map(trimmed), !yatai.isEmpty {
            return .apiToken(String(yatai))
        }
        guard let authorization = headers[.authorization].map(trimmed), !authorization.isEmpty else { return nil }
        guard let space = authorization.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
            return .apiToken(String(authorization))
        }
        let scheme = authorization[..<space]
        guard scheme.count == 6, scheme.lowercased() == "bearer" else { return nil }
        let value = trimmed(authorization[space...])
        return value.isEmpty ? nil : .bearer(String(value))
    }

    private static func trimmed(_ text: some StringProtocol) -> Substring {
        let view = Substring(text)
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = view.firstIndex(where: { !isSpace($0) }), let end = view.lastIndex(where: { !isSpace($0) })
        else {
            return ""
        }
        return view[start...end]
    }
}

extension HTTPField.Name {
    static let apiKey = Self("Api-Key")!
    static let yataiToken = Self("X-YATAI-API-TOKEN")!
    static let tesseraOrg = Self("X-Tessera-Org")!
}

/// Authenticates every request of the API routes: an API token (offline format check, then
/// lookup by SHA-256), else an OIDC JWT when configured. Sets ``TesseraRequestContext/identity``.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = TesseraRequestContext
    let store: TesseraStore
    let jwt: JWTAuthenticator?
    let lastUsed: UsageRecorder
    let trustedProxies: [AddressRange]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let credential = PresentedCredential.extract(from: request.headers) else {
            throw Problem.unauthenticated("Missing credential: send Authorization: Bearer <token>")
        }
        var context = context
        // A bearer that is not token-shaped is a JWT when JWTs are configured.
        if case .bearer(let value) = credential, let jwt, !value.hasPrefix("tsp_"), !value.hasPrefix("tso_") {
            let (username, groups) = try await jwt.authenticate(value)
            // The IdP's groups drive memberships of orgs with a group mapping (DESIGN §12).
            if let groups {
                try await SSOGroupSync(store: store, justInTime: jwt.settings.justInTime).apply(
                    username: username, groups: groups,
                    actor: AuditActor(username: username, kind: .jwt, sourceIP: context.remoteAddress),
                    logger: context.logger)
            }
            context.identity = .jwt(username: username)
        } else {
            switch try await withTimeout(.seconds(5), { [store] in try await store.verify(credential.value) }) {
            case .success(let token):
                let address = clientAddress(request, context)
                // A token limited to addresses or requests is held to them here too (DESIGN §14).
                if !token.allowedCidrs.allow(address) {
                    lastUsed.count(token, .address, at: store.clock.now())
                    throw Problem(
                        .unauthorized, "address not allowed",
                        headers: [.wwwAuthenticate: Problem.invalidTokenChallenge("address not allowed")])
                }
                // The path is normalised only for a token that has rules: not on every API request.
                if !token.accessRules.isEmpty,
                    !token.accessRules.allow(
                        method: request.method.rawValue, path: RequestPath(request.uri.path),
                        host: request.head.authority)
                {
                    lastUsed.count(token, .insufficientScope, at: store.clock.now())
                    throw Problem(
                        .forbidden,
                        "The token's access rules do not allow \(request.method) \(request.uri.path.prefix(200))")
                }
                context.identity = .token(token)
                lastUsed.record(token, at: store.clock.now(), address: address)
            case .failure(let failure): throw Problem.invalidToken(failure)
            }
        }
        return try await next(request, context)
    }
}

extension AuthenticationMiddleware {
    /// The client of Tessera's own API: the peer, or, when the peer is a trusted proxy
    /// (`TESSERA_TRUSTED_PROXIES`), the last `X-Forwarded-For` hop that is not one.
    func clientAddress(_ request: Request, _ context: TesseraRequestContext) -> String? {
        let peer = context.remoteAddress
        guard !trustedProxies.isEmpty, trustedProxies.allow(peer), let forwarded = request.headers[.forwardedFor]
        else { return peer }
        for hop in forwarded.split(separator: ",").reversed() {
            let address = hop.trimmingCharacters(in: .whitespaces)
            guard AddressRange.parse(address) != nil else { return peer }
            if !trustedProxies.allow(address) { return address }
        }
        return peer
    }
}

extension Problem {
    /// 401 with `WWW-Authenticate: Bearer` (RFC 6750), for a missing credential.
    package static func unauthenticated(_ detail: String) -> Problem {
        Problem(.unauthorized, detail, headers: [.wwwAuthenticate: "Bearer realm=\"tessera\""])
    }

    /// 401 for a credential that does not authenticate, telling why without echoing it.
    static func invalidToken(_ failure: VerificationFailure) -> Problem {
        Problem(
            .unauthorized, failure.description, headers: [.wwwAuthenticate: invalidTokenChallenge(failure.description)])
    }

    /// `WWW-Authenticate` for a token that does not authenticate (RFC 6750 `invalid_token`),
    /// shared by the management routes and `/auth/verify`.
    static func invalidTokenChallenge(_ description: String) -> String {
        "Bearer realm=\"tessera\", error=\"invalid_token\", error_description=\"\(description)\""
    }
}
