import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TesseraCore
import TesseraPostgres
import TesseraVerification

extension HTTPField.Name {
    static let tesseraTokenID = Self("X-Tessera-Token-Id")!
    static let tesseraKind = Self("X-Tessera-Kind")!
    static let tesseraUsername = Self("X-Tessera-Username")!
    static let tesseraScopes = Self("X-Tessera-Scopes")!
    static let tesseraRequiredScopes = Self("X-Tessera-Required-Scopes")!
    static let forwardedFor = Self("X-Forwarded-For")!
    static let realIP = Self("X-Real-IP")!
}

/// The hot path (DESIGN §4.2, issue #5): forward-auth for gateways and RFC 7662 introspection,
/// both through ``TokenVerifier`` (cache, then one prepared statement). Plain router handlers,
/// no JSON decoding and no thrown errors on the way to a 401: every answer is built directly.
struct VerifyController {
    let verifier: TokenVerifier
    let lastUsed: UsageRecorder

    func addRoutes(to router: Router<TesseraRequestContext>) {
        // nginx auth_request and Traefik ForwardAuth send GET; Envoy ext_authz (HTTP service)
        // forwards the original method and appends the original path to the prefix.
        for method: HTTPRequest.Method in [.get, .head, .post, .put, .patch, .delete, .options] {
            router.on("auth/verify", method: method, use: verify)
            router.on("auth/verify/**", method: method, use: verify)
        }
        router.post("oauth/introspect", use: introspect)
    }

    // MARK: - /auth/verify

    /// 200 with identity headers, 401 with `WWW-Authenticate: Bearer error="invalid_token"` and a
    /// reason, or 403 `insufficient_scope`. Nothing else, also when the database is down: a
    /// cache hit still answers, a miss fails closed with a 401 that says verification is
    /// unavailable (nginx turns any other status into a 500 for the client).
    @Sendable func verify(_ request: Request, context: TesseraRequestContext) async -> Response {
        guard let credential = PresentedCredential.extract(from: request.headers) else {
            return Self.challenge(.unauthorized, "Bearer realm=\"tessera\"", detail: "Missing credential")
        }
        switch await verifier.verify(credential.value) {
        case .failed(let failure):
            return Self.invalidToken[failure] ?? Self.challenge(.unauthorized, "Bearer", detail: failure.description)
        case .unavailable:
            return Self.unavailable
        case .verified(let token, let scopes):
            let now = verifier.store.clock.now()
            let address = Self.clientAddress(request, context)
            if !token.accessRules.isEmpty || !token.allowedCidrs.isEmpty,
                let (refusal, outcome) = LeastPrivilege.gateway(token, request, address: address)
            {
                if outcome == .insufficientScope { TokenVerifier.countInsufficientScope() }
                lastUsed.count(token, outcome, at: now)
                return refusal
            }
            let required = Self.requiredScopes(of: request)
            if let missing = required.first(where: { !scopes.contains($0) }) {
                TokenVerifier.countInsufficientScope()
                lastUsed.count(token, .insufficientScope, at: now)
                return Self.challenge(
                    .forbidden,
                    "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"\(required.joined(separator: " "))\", "
                        + "error_description=\"The token lacks scope \(missing)\"",
                    detail: "The token lacks scope \(missing)")
            }
            lastUsed.record(token, at: now, address: address)
            var headers = HTTPFields()
            headers.reserveCapacity(6)
            headers[.tesseraOrg] = token.orgSlug
            headers[.tesseraTokenID] = token.tokenIDString
            headers[.tesseraKind] = token.kind.rawValue
            headers[.tesseraUsername] = token.username
            headers[.tesseraScopes] = scopes.header
            headers[.cacheControl] = "no-store"
            return Response(status: .ok, headers: headers)
        }
    }

    /// `?scope=a&scope=b` and `X-Tessera-Required-Scopes: a b` (or comma-separated), together.
    static func requiredScopes(of request: Request) -> [String] {
        var scopes: [String] = []
        if request.uri.query != nil {  // parsing the query string is not free: only when there is one
            scopes = request.uri.queryParameters.getAll("scope").flatMap { $0.split(separator: " ") }.map(String.init)
        }
        for value in request.headers[values: .tesseraRequiredScopes] {
            scopes += value.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        }
        return scopes.filter { !$0.isEmpty }
    }

    /// The address the gateway saw (`X-Real-IP`, else `X-Forwarded-For`'s first hop), else the peer.
    static func clientAddress(_ request: Request, _ context: TesseraRequestContext) -> String? {
        if let real = request.headers[.realIP], isIPAddress(real) { return real }
        if let forwarded = request.headers[.forwardedFor]?.split(separator: ",").first {
            let address = forwarded.trimmingCharacters(in: .whitespaces)
            if isIPAddress(address) { return address }
        }
        return context.remoteAddress
    }

    private static func isIPAddress(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 45 && text.allSatisfy { $0.isHexDigit || $0 == "." || $0 == ":" }
    }

    /// Precomputed answers, one per failure reason.
    static let invalidToken: [VerificationFailure: Response] = Dictionary(
        uniqueKeysWithValues: VerificationFailure.allCases.map { failure in
            (
                failure,
                challenge(
                    .unauthorized, Problem.invalidTokenChallenge(failure.description), detail: failure.description)
            )
        })

    static let unavailable = challenge(
        .unauthorized, Problem.invalidTokenChallenge("Token verification is temporarily unavailable"),
        detail: "Token verification is temporarily unavailable (database unreachable); failing closed")

    static func challenge(_ status: HTTPResponse.Status, _ authenticate: String, detail: String) -> Response {
        let body =
            #"{"type":"https://tessera.dev/problems/\#(status.code)","title":"\#(status.reasonPhrase)","status":\#(status.code),"detail":"\#(detail)","message":"\#(detail)"}"#
        return Response(
            status: status,
            headers: [
                .wwwAuthenticate: authenticate, .contentType: "application/problem+json", .cacheControl: "no-store",
            ],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    // MARK: - /oauth/introspect

    /// RFC 7662. The caller authenticates with a token holding `tokens:read`; the answer is
    /// `{"active": true, ...}` only for a verifying token of the caller's own organization, and
    /// exactly `{"active": false}` for everything else (unknown, expired, another org's).
    @Sendable func introspect(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        guard let credential = PresentedCredential.extract(from: request.headers) else {
            throw Problem.unauthenticated(
                "Missing credential: send Authorization: Bearer <token> with scope tokens:read")
        }
        let caller: VerifiedToken
        switch await verifier.verify(credential.value) {
        case .failed(let failure): throw Problem.invalidToken(failure)
        case .unavailable: throw Problem(.serviceUnavailable, "Token introspection is temporarily unavailable")
        case .verified(let token, let scopes):
            guard scopes.contains("tokens:read") else {
                TokenVerifier.countInsufficientScope()
                throw Problem(
                    .forbidden, "Introspection needs a token with scope tokens:read",
                    headers: [
                        .wwwAuthenticate:
                            "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"tokens:read\""
                    ])
            }
            caller = token
        }
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        guard contentType.hasPrefix("application/x-www-form-urlencoded") else {
            throw Problem(
                .unsupportedMediaType, "Send the token form-encoded: Content-Type: application/x-www-form-urlencoded")
        }
        let body = try await request.body.collect(upTo: 16 * 1024)
        let form = FormBody(String(buffer: body))
        guard let presented = form["token"], !presented.isEmpty else {
            throw Problem(.badRequest, "Missing form field `token` (RFC 7662)")
        }
        guard case .verified(let token, let scopes) = await verifier.verify(presented), token.orgID == caller.orgID
        else {
            return Self.inactive
        }
        var claims: [String: Any] = [
            "active": true,
            "scope": scopes.header,
            "username": token.username,
            "sub": token.username,
            "token_type": "Bearer",
            "iat": Int64(token.createdAt.timeIntervalSince1970),
            "org": token.orgSlug,
            "token_id": token.tokenIDString,
            "kind": token.kind.rawValue,
            "groups": token.groups,
            "iss": "tessera",
        ]
        if let expiresAt = token.expiresAt { claims["exp"] = Int64(expiresAt.timeIntervalSince1970) }
        if !token.accessRules.isEmpty {
            claims["access_rules"] = token.accessRules.map { rule -> [String: String] in
                var shown = ["method": rule.method, "path": rule.path]
                if let host = rule.host { shown["host"] = host }
                return shown
            }
        }
        if !token.allowedCidrs.isEmpty { claims["allowed_cidrs"] = token.allowedCidrs.map(\.text) }
        let data = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static let inactive = Response(
        status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(string: #"{"active":false}"#)))
}

/// `application/x-www-form-urlencoded`, the first value of each name.
struct FormBody {
    private var values: [String: String] = [:]

    init(_ text: String) {
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]), values[name] == nil else { continue }
            values[name] = parts.count > 1 ? Self.decode(parts[1]) : ""
        }
    }

    subscript(name: String) -> String? { values[name] }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}

/// `GET /metrics`: the Prometheus text exposition of this process.
struct MetricsController {
    func addRoutes(to router: Router<TesseraRequestContext>) {
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: TesseraMetrics.registry.emitToBuffer())))
        }
    }
}
