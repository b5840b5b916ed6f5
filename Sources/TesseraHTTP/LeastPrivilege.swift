import HTTPTypes
import Hummingbird
import NIOCore
import TesseraCore
import TesseraVerification

extension HTTPField.Name {
    static let forwardedMethod = Self("X-Forwarded-Method")!
    static let forwardedURI = Self("X-Forwarded-Uri")!
    static let forwardedHost = Self("X-Forwarded-Host")!
    static let originalMethod = Self("X-Original-Method")!
    static let originalURI = Self("X-Original-URI")!
}

/// The request a gateway asks `/auth/verify` about (DESIGN §14): Traefik's ForwardAuth headers
/// (`X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`), nginx `auth_request` with
/// `X-Original-Method` and `X-Original-URI` (and `X-Forwarded-Host` if set), or Envoy's ext_authz
/// HTTP service (the method of the check itself, the path after `/auth/verify`, its Host).
struct OriginalRequest {
    let method: String
    let uri: Substring
    let host: String?

    init?(_ request: Request) {
        let headers = request.headers
        if let uri = headers[.forwardedURI] {
            method = headers[.forwardedMethod] ?? "GET"
            self.uri = Substring(uri)
        } else if let uri = headers[.originalURI] {
            method = headers[.originalMethod] ?? "GET"
            self.uri = Substring(uri)
        } else {
            let path = request.uri.path
            let prefix = "/auth/verify/"
            guard path.hasPrefix(prefix) else { return nil }
            method = request.method.rawValue
            // The original path after the prefix, its query (if any) left to the path rules to drop.
            let raw = request.uri.description
            self.uri = raw.dropFirst(prefix.count - 1)
        }
        host = headers[.forwardedHost] ?? (request.uri.path.hasPrefix("/auth/verify/") ? request.head.authority : nil)
    }

    /// What a refusal may say about the request: the normalised path (or the raw one cut short),
    /// printable ASCII without quotes or backslashes, so it fits a header and a JSON string.
    func described(_ path: RequestPath?) -> String {
        let text = path?.text ?? String(uri.prefix(120))
        let method = String(self.method.prefix(16))
        let safe = { (text: String) in
            String(
                text.unicodeScalars.map {
                    $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" && $0.value < 0x7f ? Character($0) : "?"
                }.prefix(200))
        }
        return "\(safe(method)) \(safe(text))"
    }
}

enum LeastPrivilege {
    /// 401 `invalid_token` "address not allowed": the token is limited to other addresses.
    static let addressRefused = VerifyController.challenge(
        .unauthorized, Problem.invalidTokenChallenge("address not allowed"),
        detail: "The token may not be used from this address (address not allowed)")

    /// 403 `insufficient_scope` naming the request no rule of the token allows.
    static func ruleRefused(_ described: String?) -> Response {
        let detail =
            described.map { "The token's access rules do not allow \($0)" }
            ?? "The token has access rules: the gateway must forward the original method and URI"
        return VerifyController.challenge(
            .forbidden, "Bearer realm=\"tessera\", error=\"insufficient_scope\", error_description=\"\(detail)\"",
            detail: detail)
    }

    /// Whether `token` may make the request `/auth/verify` is asked about; nil when it may, else
    /// the answer to send.
    static func gateway(_ token: VerifiedToken, _ request: Request, address: String?) -> (Response, UsageOutcome)? {
        if !token.allowedCidrs.isEmpty && !token.allowedCidrs.allow(address) {
            return (addressRefused, .address)
        }
        guard !token.accessRules.isEmpty else { return nil }
        guard let original = OriginalRequest(request) else { return (ruleRefused(nil), .insufficientScope) }
        let path = RequestPath(original.uri)
        if token.accessRules.allow(method: original.method, path: path, host: original.host) { return nil }
        return (ruleRefused(original.described(path)), .insufficientScope)
    }
}
