import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import TesseraCore
import TesseraHTTP
import TesseraPostgres

extension SCIMController {
    /// An organization token of the path's org holding `scim:provision` (not through an
    /// implication: the scope is granted on purpose), and the org's SCIM base URL.
    func authorize(_ request: Request, _ context: TesseraRequestContext) async throws -> (OrganizationRecord, String) {
        let slug = try context.parameters.require("org")
        guard case .token(let token) = context.identity, token.kind == .organization,
            token.scopes.contains(BuiltInScope.scimProvision)
        else {
            throw SCIMError(
                status: 403, detail: "SCIM needs an organization token holding \(BuiltInScope.scimProvision)")
        }
        guard token.orgSlug == slug else {
            throw SCIMError(status: 403, detail: "This token provisions organization \(token.orgSlug) only")
        }
        let org = try await store.withConnection { [logger = context.logger] in
            try await OrganizationRepository($0, logger: logger).find(id: token.orgID)
        }
        guard let org else { throw SCIMError.notFound("Organization not found") }
        return (org, Self.base(request, slug: slug))
    }

    func provisioningRequest(_ request: Request, _ context: TesseraRequestContext) async throws
        -> ProvisioningService.Request
    {
        let (org, base) = try await authorize(request, context)
        guard case .token(let token) = context.identity else { throw SCIMError(status: 401, detail: "No credential") }
        let actor = AuditActor(
            username: token.username, kind: .scim, tokenID: token.tokenID, sourceIP: context.remoteAddress)
        return ProvisioningService.Request(org: org, base: base, actor: actor, logger: context.logger)
    }

    /// `https://host/scim/v2/<org>`, as the client reached this server.
    static func base(_ request: Request, slug: String) -> String { "\(request.origin)/scim/v2/\(slug)" }

    /// The request's JSON body (SCIM or plain JSON), at most 1 MiB.
    static func body(_ request: Request, _ context: TesseraRequestContext) async throws -> JSONValue {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: context.maxUploadSize)
        } catch {
            // A well-behaved client gets here only with a body over the limit.
            throw SCIMError(status: 413, detail: "The body is larger than 1 MiB")
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(buffer: buffer))
        } catch {
            throw SCIMError.invalidSyntax("The body is not a JSON object")
        }
    }

    static func respond(_ value: JSONValue, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var headers: HTTPFields = [.contentType: contentType]
        if let version = value["meta"]?["version"]?.string { headers[.eTag] = version }
        if status == .created, let location = value["meta"]?["location"]?.string { headers[.location] = location }
        return Response(
            status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(value))))
    }

    static func list(_ resources: [JSONValue], total: Int?, startIndex: Int) -> JSONValue {
        .object([
            "schemas": .array([.string(SCIMResource.listSchema)]),
            "totalResults": .number(Double(total ?? resources.count)), "startIndex": .number(Double(startIndex)),
            "itemsPerPage": .number(Double(resources.count)), "Resources": .array(resources),
        ])
    }
}

/// `filter`, `startIndex`, `count`, `attributes`, `excludedAttributes` of a list (query string
/// or a `.search` body).
struct ListQuery {
    var filter: SCIMFilter?
    var startIndex = 1
    var count = 100
    var projection = Projection()

    static let maxCount = 1000

    /// From the query string. `filter` is read form-encoded (Entra ID sends `userName+eq+"x"`,
    /// a `+` for each space; a literal plus arrives as `%2B`).
    init(_ parameters: Parameters, rawQuery: String?) throws(SCIMError) {
        if let text = Self.formValue("filter", in: rawQuery), !text.isEmpty { filter = try SCIMFilter(parsing: text) }
        startIndex = try Self.integer(parameters.get("startIndex"), "startIndex") ?? 1
        count = try Self.integer(parameters.get("count"), "count") ?? 100
        projection = Projection(
            attributes: parameters.get("attributes"), excluded: parameters.get("excludedAttributes"))
        clamp()
    }

    init(search body: JSONValue) throws(SCIMError) {
        if let text = body["filter"]?.string, !text.isEmpty { filter = try SCIMFilter(parsing: text) }
        if case .number(let value)? = body["startIndex"] { startIndex = Int(value) }
        if case .number(let value)? = body["count"] { count = Int(value) }
        func names(_ key: String) -> String? {
            body[key]?.array.map { $0.compactMap(\.string).joined(separator: ",") } ?? body[key]?.string
        }
        projection = Projection(attributes: names("attributes"), excluded: names("excludedAttributes"))
        clamp()
    }

    private mutating func clamp() {
        startIndex = max(startIndex, 1)
        count = min(max(count, 0), Self.maxCount)
    }

    static func formValue(_ name: String, in query: String?) -> String? {
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0] == name else { continue }
            return String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        return nil
    }

    static func integer(_ text: String?, _ name: String) throws(SCIMError) -> Int? {
        guard let text else { return nil }
        guard let value = Int(text) else { throw SCIMError.invalidValue("\(name) must be an integer") }
        return value
    }
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5): `id` and `schemas` always come back.
struct Projection {
    var attributes: [[String]] = []
    var excluded: [[String]] = []

    init() {}

    init(attributes: String?, excluded: String?) {
        func paths(_ text: String?) -> [[String]] {
            (text ?? "").split(separator: ",").map {
                SCIMFilter.AttributePath($0.trimmingCharacters(in: .whitespaces)).names.map { $0.lowercased() }
            }.filter { !$0.isEmpty }
        }
        self.attributes = paths(attributes)
        self.excluded = paths(excluded)
    }

    func includes(_ attribute: String) -> Bool {
        let name = attribute.lowercased()
        if !attributes.isEmpty { return attributes.contains { $0.first == name } }
        return !excluded.contains { $0 == [name] }
    }

    func apply(_ resource: JSONValue) -> JSONValue {
        guard case .object(let members) = resource else { return resource }
        let always: Set<String> = ["id", "schemas"]
        var result: [String: JSONValue] = [:]
        for (key, value) in members {
            let name = key.lowercased()
            if always.contains(name) {
                result[key] = value
                continue
            }
            if !attributes.isEmpty {
                let wanted = attributes.filter { $0.first == name }
                guard !wanted.isEmpty else { continue }
                if wanted.contains(where: { $0.count == 1 }) {
                    result[key] = value
                } else {
                    let subs = Set(wanted.compactMap { $0.count > 1 ? $0[1] : nil })
                    result[key] = Self.keep(value, subs)
                }
            } else {
                if excluded.contains([name]) { continue }
                let subs = Set(excluded.filter { $0.first == name && $0.count > 1 }.map { $0[1] })
                result[key] = subs.isEmpty ? value : Self.drop(value, subs)
            }
        }
        return .object(result)
    }

    private static func keep(_ value: JSONValue, _ subs: Set<String>) -> JSONValue {
        switch value {
        case .array(let items): return .array(items.map { keep($0, subs) })
        case .object(let members): return .object(members.filter { subs.contains($0.key.lowercased()) })
        default: return value
        }
    }

    private static func drop(_ value: JSONValue, _ subs: Set<String>) -> JSONValue {
        switch value {
        case .array(let items): return .array(items.map { drop($0, subs) })
        case .object(let members): return .object(members.filter { !subs.contains($0.key.lowercased()) })
        default: return value
        }
    }
}

/// The discovery documents (resource files, compiled in), their locations under the org's base.
enum SCIMDiscovery {
    static let schemaDocuments = load(PackageResources.scim_schemas_json)
    static let resourceTypeDocuments = load(PackageResources.scim_resource_types_json)
    static let configDocument = load(PackageResources.scim_service_provider_config_json)

    static func load(_ bytes: [UInt8]) -> JSONValue {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))) ?? .null
    }

    static func located(_ document: JSONValue, base: String) -> JSONValue {
        var document = document
        if var meta = document["meta"], let location = meta["location"]?.string {
            meta.set("location", .string(base + location))
            document.set("meta", meta)
        }
        return document
    }

    static func schemas(base: String) -> [JSONValue] {
        (schemaDocuments.array ?? []).map { located($0, base: base) }
    }

    static func resourceTypes(base: String) -> [JSONValue] {
        (resourceTypeDocuments.array ?? []).map { located($0, base: base) }
    }

    static func serviceProviderConfig(base: String) -> JSONValue {
        located(configDocument, base: base)
    }
}

/// Every error under `/scim/v2/` in SCIM's error shape (RFC 7644 §3.12), whatever raised it: a
/// ``SCIMError``, a domain rule, the authentication middleware's problem, a body too large.
struct SCIMErrorMiddleware: RouterMiddleware {
    typealias Context = TesseraRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as SCIMError {
            return try respond(error)
        } catch let error as DomainError {
            return try respond(SCIMError(error))
        } catch let problem as Problem {
            var response = try respond(SCIMError(status: Int(problem.status.code), detail: problem.detail))
            if let challenge = problem.headers[.wwwAuthenticate] { response.headers[.wwwAuthenticate] = challenge }
            return response
        } catch let error as HTTPError {
            let detail =
                switch error.status {
                case .contentTooLarge: "The body is larger than 1 MiB"
                case .notFound: "No such SCIM endpoint: \(request.method) \(request.uri.path)"
                default: error.body ?? error.status.reasonPhrase
                }
            return try respond(SCIMError(status: Int(error.status.code), detail: detail))
        } catch let error as PSQLError where error.isUniqueViolation {
            return try respond(SCIMError.uniqueness("The value is taken"))
        } catch  where isDatabaseUnavailable(error) {
            context.logger.warning("database unavailable", metadata: ["error": "\(describeDatabaseFailure(error))"])
            var response = try respond(SCIMError(status: 503, detail: "The database is unavailable; retry shortly"))
            response.headers[.retryAfter] = "1"
            return response
        } catch {
            context.logger.error("unhandled SCIM error", metadata: ["error": "\(String(reflecting: error))"])
            return try respond(SCIMError(status: 500, detail: "Internal server error"))
        }
    }

    func respond(_ error: SCIMError) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(
            status: HTTPResponse.Status(code: error.status),
            headers: [.contentType: SCIMController.contentType],
            body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(error.body))))
    }
}
