import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// The OpenAPI document is the contract: every operation it lists exists, and what the server
/// answers is documented. (The status of every case the other suites exercise is in it too.)
@Suite struct OpenAPITests {
    static func operations(_ document: [String: Any]) -> [(path: String, method: String, statuses: Set<String>, secured: Bool)] {
        let paths = document["paths"] as? [String: [String: [String: Any]]] ?? [:]
        return paths.flatMap { path, methods in
            methods.map { method, operation in
                let statuses = Set((operation["responses"] as? [String: Any] ?? [:]).keys)
                let secured = !((operation["security"] as? [Any])?.isEmpty ?? true)
                return (path, method, statuses, secured)
            }
        }.sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }

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
            #expect(first.json["openapi"] as? String == "3.1.0")
            #expect(Self.operations(first.json).count >= 26)
        }
    }

    @Test func everyOperationExistsAndAnswersWithADocumentedStatus() async throws {
        try await TestApp.run { app, client in
            let document = try await client.call(.get, "/openapi.json").json
            for operation in Self.operations(document) {
                let method = HTTPRequest.Method(rawValue: operation.method.uppercased())!
                let body = ["post", "put", "patch"].contains(operation.method) ? "{}" : nil
                // Without a credential: secured operations answer 401, all of them documented.
                let anonymous = try await client.call(method, Self.concrete(operation.path), json: body)
                #expect(!anonymous.text.contains("No route"), "\(operation.method) \(operation.path) is not routed")
                #expect(operation.statuses.contains(String(anonymous.status.code)),
                        "\(operation.method) \(operation.path) answered \(anonymous.status.code) without a credential")
                if operation.secured { #expect(anonymous.status == .unauthorized) }
                // As the platform admin: whatever it answers is documented.
                let admin = try await client.call(method, Self.concrete(operation.path), token: app.root.token.plaintext, json: body)
                #expect(operation.statuses.contains(String(admin.status.code)),
                        "\(operation.method) \(operation.path) answered \(admin.status.code): \(admin.text)")
            }
        }
    }
}
