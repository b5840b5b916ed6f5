import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import TesseraAPI
import TesseraBentoCloud
import TesseraFederation
import TesseraPostgres
import TesseraVerification
import TesseraWebhooks
import Testing

@testable import TesseraHTTP

/// The OpenAPI document (Resources/openapi.json) is the hand-kept contract: the router serves
/// exactly its operations, every answer's status is documented, and every JSON answer has the
/// fields its schema requires.
@Suite struct OpenAPITests {
    static func concrete(_ path: String) -> String {
        path.replacingOccurrences(of: "{org}", with: "acme")
            .replacingOccurrences(of: "{tokenUUID}", with: UUID().uuidString.lowercased())
            .replacingOccurrences(of: "{username}", with: "nobody")
    }

    @Test func servedAtBothPathsAndValid() async throws {
        try await TestApp.run { _, client in
            let first = try await client.call(.get, "/openapi.json")
            let second = try await client.call(.get, "/api-tokens/openapi.json")
            #expect(first.status == .ok && second.status == .ok)
            #expect(first.text == second.text)
            #expect(Array(first.text.utf8) == OpenAPIDocument.bytes)
            #expect(first.json["openapi"] as? String == "3.1.0")
            #expect(OpenAPIContract.operations.count >= 26)
        }
    }

    /// The router (the console's pages aside) and the document list the same operations.
    @Test func theRouterServesExactlyTheDocumentedOperations() async throws {
        let logger = Logger(label: "tessera.test.routes")
        let client = PostgresClient(
            configuration: .init(
                host: "127.0.0.1", port: 1, username: "nobody", password: nil, database: nil, tls: .disable),
            backgroundLogger: logger)
        let store = TesseraStore(client: client, logger: logger)
        let verifier = TokenVerifier(store: store, cache: VerificationCache(settings: .init()))
        let router = buildRouter(
            store: store, migrator: try Migrator(), jwt: nil,
            lastUsed: UsageRecorder(client: client, logger: logger), verifier: verifier, listener: nil,
            surfaces: [
                BentoCloudSurface(),
                FederationSurface(settings: .init(), server: ServerConfiguration(), client: client, logger: logger),
            ], webhookTargets: WebhookTargetPolicy(allowPrivate: false),
            reportLimiter: RateLimiter(perMinute: 10))
        let routed = Set(
            router.routes.filter { !["console", "scim"].contains($0.path.components.first?.description) }
                // /oauth/token answers other methods 405 in OAuth's error shape (documented under POST)
                .filter { $0.path.description != "/oauth/token" || $0.method == .post }
                .map {
                    // Envoy's /auth/verify/** is documented as /auth/verify/{path}
                    let path = $0.path.description.replacingOccurrences(of: "**", with: "{path}")
                    return "\($0.method.rawValue.lowercased()) \(OpenAPIContract.shape(path))"
                })
        let documented = Set(OpenAPIContract.operations.map { "\($0.method) \(OpenAPIContract.shape($0.path))" })
        #expect(routed.subtracting(documented).sorted() == [], "routed but not documented")
        #expect(documented.subtracting(routed).sorted() == [], "documented but not routed")
    }

    @Test func everyOperationExistsAndAnswersWithADocumentedStatus() async throws {
        try await TestApp.run { app, client in
            for operation in OpenAPIContract.operations {
                let method = HTTPRequest.Method(rawValue: operation.method.uppercased())!
                let body = ["post", "put", "patch"].contains(operation.method) ? "{}" : nil
                // Without a credential: secured operations answer 401, all of them documented.
                let anonymous = try await client.call(method, Self.concrete(operation.path), json: body)
                #expect(!anonymous.text.contains("No route"), "\(operation.method) \(operation.path) is not routed")
                #expect(
                    operation.statuses.contains(String(anonymous.status.code)),
                    "\(operation.method) \(operation.path) answered \(anonymous.status.code) without a credential")
                if operation.secured { #expect(anonymous.status == .unauthorized) }
                // As the platform admin: whatever it answers is documented, with the fields it requires.
                let admin = try await client.call(
                    method, Self.concrete(operation.path), token: app.root.token.plaintext, json: body)
                #expect(
                    operation.statuses.contains(String(admin.status.code)),
                    "\(operation.method) \(operation.path) answered \(admin.status.code): \(admin.text)")
                Self.expectConforms(admin, operation)
            }
        }
    }

    /// The answers of a token's and a webhook's whole life, each held to its documented schema.
    @Test func answersHaveTheFieldsTheirSchemasRequire() async throws {
        try await TestApp.run { app, client in
            let admin = app.root.token.plaintext
            try await app.addMember("ada", groups: ["ml"])
            func check(_ method: HTTPRequest.Method, _ path: String, _ documented: String, json: String? = nil)
                async throws -> Reply
            {
                let reply = try await client.call(method, path, token: admin, json: json)
                #expect(reply.status.code < 300, "\(method) \(path): \(reply.status.code) \(reply.text)")
                let operation = try #require(OpenAPIContract.operation(method.rawValue, documented), "\(documented)")
                #expect(Self.expectConforms(reply, operation), "\(method) \(path): no documented JSON schema checked")
                return reply
            }
            let created = try await check(
                .post, "/api-tokens/ci-bot", "/api-tokens/{tokenUUID}", json: #"{"name": "ci", "isSystemToken": true}"#)
            let id = try #require(created.string("tokenUUID"))
            _ = try await check(.post, "/api-tokens/ada", "/api-tokens/{tokenUUID}", json: #"{"name": "ada's"}"#)
            _ = try await check(.get, "/api-tokens", "/api-tokens")
            _ = try await check(.get, "/api-tokens/self", "/api-tokens/self")
            _ = try await check(.get, "/api-tokens/\(id)", "/api-tokens/{tokenUUID}")
            _ = try await check(.patch, "/api-tokens/\(id)", "/api-tokens/{tokenUUID}", json: #"{"description": "d"}"#)
            let rotated = try await check(
                .post, "/api-tokens/\(id)/rotate", "/api-tokens/{tokenUUID}/rotate", json: "{}")
            _ = try await check(
                .delete, "/api-tokens/\(try #require(rotated.string("tokenUUID")))", "/api-tokens/{tokenUUID}")
            _ = try await check(.get, "/orgs", "/orgs")
            _ = try await check(.get, "/orgs/acme", "/orgs/{org}")
            _ = try await check(.get, "/orgs/acme/members", "/orgs/{org}/members")
            _ = try await check(
                .put, "/orgs/acme/members/bob", "/orgs/{org}/members/{username}", json: #"{"role": "member"}"#)
            _ = try await check(.get, "/orgs/acme/audit-events", "/orgs/{org}/audit-events")
            _ = try await check(.get, "/users/ada", "/users/{username}")
            _ = try await check(.get, "/api/v1/api_tokens", "/api/v1/api_tokens")
            _ = try await check(.get, "/api/v1/current_org", "/api/v1/current_org")
            _ = try await check(.get, "/api/v1/auth/current", "/api/v1/auth/current")
        }
    }

    /// Holds a JSON answer to its documented schema; false when there was none to check.
    @discardableResult
    static func expectConforms(_ reply: Reply, _ operation: OpenAPIContract.Operation) -> Bool {
        guard reply.headers[.contentType]?.hasPrefix("application/json") == true,
            let schema = OpenAPIContract.schema(of: operation, status: Int(reply.status.code)),
            let value = try? JSONSerialization.jsonObject(with: Data(reply.text.utf8), options: .fragmentsAllowed)
        else { return false }
        let found = OpenAPIContract.violations(value, schema)
        #expect(found.isEmpty, "\(operation.method) \(operation.path) \(reply.status.code): \(found)")
        return true
    }

    @Test func theCheckerFindsWhatIsMissing() {
        let list: [String: Any] = ["$ref": "#/components/schemas/TokenList"]
        #expect(OpenAPIContract.violations(["tokens": []], list).isEmpty)
        #expect(OpenAPIContract.violations([:] as [String: Any], list) == ["$.tokens: required, missing"])
        let found = OpenAPIContract.violations(["tokens": [["name": 3]]], list)
        #expect(
            found.contains("$.tokens[0].tokenUUID: required, missing")
                && found.contains("$.tokens[0].name: not a string"))
    }
}
