import Foundation
import Hummingbird
import Synchronization
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraVerification

/// An RFC 9457 problem. Bodies carry `message` too (same text as `detail`) for LISA clients.
/// Nothing internal (SQL, stack, token) ever goes into one.
public struct Problem: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var detail: String
    public var type: String
    /// Per-field messages of a 422.
    public var errors: [FieldError]
    public var headers: HTTPFields

    public typealias FieldError = ProblemBody.FieldError

    public init(
        _ status: HTTPResponse.Status, _ detail: String, type: String? = nil, errors: [FieldError] = [],
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.detail = detail
        self.type = type ?? "https://tessera.dev/problems/\(status.code)"
        self.errors = errors
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = ProblemBody(
            type: type, title: status.reasonPhrase, status: status.code, detail: detail,
            errors: errors.isEmpty ? nil : errors)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(
            status: status, headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: (try? encoder.encode(body)) ?? Data()))
        )
    }
}

extension Problem {
    /// The one mapping of a domain refusal to its problem (status and text).
    public init(_ error: DomainError) {
        switch error {
        case .invalidField(let field, let reason): self = .invalidField(field, reason)
        case .invalid(let message): self.init(.badRequest, message)
        case .forbidden(let message): self.init(.forbidden, message)
        case .notAnAdmin(let message): self.init(.unauthorized, message)
        case .notFound(let message): self.init(.notFound, message)
        case .conflict(let message): self.init(.conflict, message)
        }
    }

    /// Runs `body`, turning a ``DomainError`` into the problem it stands for, so every surface's
    /// error handling (problem+json, console pages) sees one kind of refusal.
    public static func mappingDomainErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DomainError {
            throw Problem(error)
        }
    }
}

/// Turns every error into a problem+json response: ``Problem`` as is, Hummingbird's `HTTPError`
/// with its status, anything else as a logged 500 whose body says nothing internal.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await Problem.mappingDomainErrors { try await next(request, context) }
        } catch let problem as Problem {
            return try problem.response(from: request, context: context)
        } catch let error as HTTPError where error.status == .notFound {
            // A routed path with another method: 405 and Allow (RFC 9110), not 404.
            if let allowed = routes.methods(for: request.uri.path) {
                return try Problem(
                    .methodNotAllowed,
                    "Method \(request.method) is not allowed here; use \(allowed.joined(separator: ", "))",
                    headers: [.allow: allowed.joined(separator: ", ")]
                ).response(from: request, context: context)
            }
            return try Problem(.notFound, "No route for \(request.method) \(request.uri.path)").response(
                from: request, context: context)
        } catch let error as HTTPError {
            let detail: String =
                switch error.status {
                case .contentTooLarge: "Request body is larger than 1 MiB"
                default: error.body ?? error.status.reasonPhrase
                }
            return try Problem(error.status, detail, headers: error.headers).response(from: request, context: context)
        } catch  where isDatabaseUnavailable(error) {
            context.logger.warning("database unavailable", metadata: ["error": "\(describeDatabaseFailure(error))"])
            return try Problem(
                .serviceUnavailable, "The database is unavailable; retry shortly", headers: [.retryAfter: "1"]
            ).response(from: request, context: context)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            return try Problem(.internalServerError, "Internal server error").response(from: request, context: context)
        }
    }
}

/// The methods each routed path answers, read from the router once every route is added, to
/// tell "no such path" (404) from "not with this method" (405 and `Allow`). The console's pages
/// are left out: they answer a wrong method with their own not-found page.
final class RouteMethods: Sendable {
    private let table = Mutex<[(segments: [String?], methods: Set<String>)]>([])

    /// Takes the routes of `router` (captures and wildcards match any segment).
    func load<Context>(from router: Router<Context>) {
        var methods: [String: (segments: [String?], methods: Set<String>)] = [:]
        for route in router.routes {
            let elements = route.path.components.map(\.description)
            // The console answers with pages, SCIM with its own error bodies (RFC 7644).
            guard elements.first != "console", elements.first != "scim" else { continue }
            let segments: [String?] = elements.map { $0.hasPrefix("{") || $0.hasPrefix("*") ? nil : $0 }
            methods[route.path.description, default: (segments, [])].methods.insert(route.method.rawValue)
        }
        table.withLock { $0 = Array(methods.values) }
    }

    /// The methods of the most specific routed path matching `path` (literal segments win over
    /// parameters, as in the router), or nil when no routed path matches.
    func methods(for path: String) -> [String]? {
        let parts = path.split(separator: "/").map(String.init)
        let matches = table.withLock { table in
            table.filter { route in
                route.segments.count == parts.count && zip(route.segments, parts).allSatisfy { $0 == nil || $0 == $1 }
            }
        }
        guard let best = matches.map({ $0.segments.compactMap { $0 }.count }).max() else { return nil }
        let methods = matches.filter { $0.segments.compactMap { $0 }.count == best }.reduce(into: Set<String>()) {
            $0.formUnion($1.methods)
        }
        return methods.sorted()
    }
}

/// Refuses a URI whose percent-decoded path or query holds control characters (NUL above all:
/// PostgreSQL text cannot store it) or is not valid UTF-8: 400 before any handler or query.
/// Costs one byte scan per request; decoding only happens when there is a `%`.
struct URISanityMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let raw = request.uri.description
        // The verify path answers only 200/401/403 and never takes text from the URI to the database.
        if raw.utf8.contains(UInt8(ascii: "%")) && !request.uri.path.hasPrefix("/auth/verify") {
            guard let decoded = raw.removingPercentEncoding else {
                throw Problem(.badRequest, "The request URI holds a malformed percent-encoding or invalid UTF-8")
            }
            if !Validation.isPlainText(decoded) {
                throw Problem(.badRequest, "The request URI holds control characters")
            }
        }
        return try await next(request, context)
    }
}
