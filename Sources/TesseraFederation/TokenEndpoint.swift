import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TesseraAPI
import TesseraHTTP

extension TokenExchangeResponse: ResponseEncodable {}

/// `POST /oauth/token` (RFC 8693): form-encoded, no client authentication. Parameters appear at
/// most once (RFC 6749 §3.2); the answer is never cached.
struct TokenEndpoint {
    let exchange: TokenExchangeService

    static let grantType = "urn:ietf:params:oauth:grant-type:token-exchange"
    static let subjectTokenTypes: Set<String> = [
        "urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt",
    ]
    static let bodyLimit = 64 * 1024

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post("token", use: token)
        // Every other method: 405 with `Allow: POST`, in OAuth's shape (the router's own 405 would
        // list these handlers as allowed).
        for method in [HTTPRequest.Method.get, .head, .put, .patch, .delete, .options] {
            group.on("token", method: method) { request, _ -> Response in
                throw ExchangeRefusal(
                    error: "invalid_request", description: "\(request.method) is not allowed here; use POST",
                    status: 405)
            }
        }
    }

    @Sendable func token(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let contentType = request.headers[.contentType]?.split(separator: ";").first?
            .trimmingCharacters(in: .whitespaces).lowercased()
        guard contentType == "application/x-www-form-urlencoded" else {
            throw ExchangeRefusal.request("the body must be application/x-www-form-urlencoded")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.bodyLimit)
        } catch {
            throw ExchangeRefusal.request("the body is larger than 64 KiB")
        }
        let form = try Self.form(String(buffer: body))
        guard let grant = form["grant_type"] else { throw ExchangeRefusal.request("grant_type is missing") }
        guard grant == Self.grantType else {
            throw ExchangeRefusal.unsupportedGrantType("only \(Self.grantType) is supported")
        }
        guard let subjectToken = form["subject_token"], !subjectToken.isEmpty else {
            throw ExchangeRefusal.request("subject_token is missing")
        }
        guard let type = form["subject_token_type"] else {
            throw ExchangeRefusal.request("subject_token_type is missing")
        }
        guard Self.subjectTokenTypes.contains(type) else {
            throw ExchangeRefusal.request("subject_token_type must be an id_token or a jwt")
        }
        if let wanted = form["requested_token_type"], wanted != "urn:ietf:params:oauth:token-type:access_token" {
            throw ExchangeRefusal.request("only access tokens are issued")
        }
        guard form["actor_token"] == nil else {
            throw ExchangeRefusal.request("delegation (actor_token) is not supported")
        }
        guard form["resource"] == nil else {
            throw ExchangeRefusal.target("resource is not supported: name the organization in audience")
        }
        guard let audience = form["audience"], !audience.isEmpty else {
            throw ExchangeRefusal.request("audience (the organization's slug) is missing")
        }
        let issued = try await exchange.exchange(
            .init(
                subjectToken: subjectToken, organization: audience, scope: form["scope"],
                sourceIP: context.remoteAddress),
            logger: context.logger)
        let answer = TokenExchangeResponse(
            accessToken: issued.secret.plaintext, expiresIn: issued.expiresIn,
            scope: issued.scopes.joined(separator: " "))
        return try OAuthErrorMiddleware.json(answer, status: .ok)
    }

    /// `application/x-www-form-urlencoded` (`+` is a space); a parameter given twice is an error.
    static func form(_ text: String) throws(ExchangeRefusal) -> [String: String] {
        var form: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard
                let name = parts[0].replacingOccurrences(of: "+", with: " ").removingPercentEncoding,
                let value = (parts.count > 1 ? String(parts[1]) : "").replacingOccurrences(of: "+", with: " ")
                    .removingPercentEncoding
            else { throw .request("the body is not valid form encoding") }
            guard form[name] == nil else { throw .request("\(name.prefix(64)) is given more than once") }
            form[name] = value
        }
        return form
    }
}

/// Every error under `/oauth` as RFC 6749 §5.2 JSON, never problem+json: an
/// ``ExchangeRefusal`` with its status (400), anything else (the database away) as 503
/// `temporarily_unavailable`, logged. Answers carry `Cache-Control: no-store`.
struct OAuthErrorMiddleware: RouterMiddleware {
    typealias Context = TesseraRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let refusal as ExchangeRefusal {
            var response = try Self.json(
                OAuthErrorBody(error: refusal.error, errorDescription: refusal.description),
                status: .init(code: refusal.status))
            if refusal.status == 405 { response.headers[.allow] = "POST" }
            return response
        } catch {
            context.logger.error("federation: exchange failed", metadata: ["error": "\(error)"])
            return try Self.json(
                OAuthErrorBody(
                    error: "temporarily_unavailable", errorDescription: "the token service cannot issue tokens now"),
                status: .serviceUnavailable)
        }
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Response(
            status: status,
            headers: [
                .contentType: "application/json", .cacheControl: "no-store", HTTPField.Name("Pragma")!: "no-cache",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}
