import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import Testing
import TesseraHTTP
import TesseraPostgres
import TesseraTestSupport

@Suite struct HealthTests {
    func makeApp(_ url: DatabaseURL) async throws -> some ApplicationProtocol {
        let logger = Logger(label: "tessera.test")
        let client = PostgresClient(configuration: try url.clientConfiguration(), backgroundLogger: logger)
        return try await buildApplication(configuration: .init(), client: client, migrator: try Migrator(), logger: logger)
    }

    @Test func healthAndReadyOnAMigratedDatabase() async throws {
        let app = try await makeApp(try await TestPostgres.shared.makeDatabase())
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"ok\""))
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"ready\""))
            }
        }
    }

    @Test func notReadyWithPendingMigrations() async throws {
        let app = try await makeApp(try await TestPostgres.shared.makeEmptyDatabase())
        try await app.test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(String(buffer: response.body).contains("pending migrations"))
            }
        }
    }

    @Test func unknownRoutesAreProblems() async throws {
        let app = try await makeApp(try await TestPostgres.shared.makeDatabase())
        try await app.test(.router) { client in
            try await client.execute(uri: "/nope", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
                let body = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                #expect(body?["status"] as? Int == 404)
                #expect(body?["detail"] as? String == body?["message"] as? String)
            }
        }
    }
}
