import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import TesseraHTTP
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

@Suite struct HealthTests {
    func makeApp(_ url: DatabaseURL) async throws -> some ApplicationProtocol {
        let logger = Logger(label: "tessera.test")
        let client = PostgresClient(configuration: try url.clientConfiguration(), backgroundLogger: logger)
        return try await buildApplication(
            configuration: .init(), client: client, migrator: try Migrator(), logger: logger)
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

    /// `GET /` (#11): a browser gets a small HTML page, API clients a JSON index; `/docs` lists the API.
    @Test func theRootAnswersBrowsersWithHTMLAndClientsWithJSON() async throws {
        try await TestApp.run { _, client in
            // With the console (the default), a browser goes there.
            let console = try await client.call(.get, "/", headers: [.accept: "text/html,*/*;q=0.8"])
            #expect(console.status == .seeOther && console.headers[.location] == "/console/")
        }
        try await TestApp.run(console: nil) { _, client in
            #expect(try await client.call(.get, "/console/sign-in").status == .notFound)
            let browser = try await client.call(
                .get, "/", headers: [.accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"])
            #expect(browser.status == .ok)
            #expect(browser.headers[.contentType] == "text/html; charset=utf-8")
            #expect(browser.text.contains("href=\"/docs\"") && browser.text.contains("href=\"/openapi.json\""))
            #expect(!browser.text.contains("<script"))
            // The one inline stylesheet is allowed by its hash, nothing inline otherwise.
            let policy = try #require(browser.headers[.contentSecurityPolicy])
            #expect(policy.hasPrefix("default-src 'none'") && !policy.contains("unsafe-inline"))
            let style = try #require(browser.text.split(separator: "<style>").last?.split(separator: "</style>").first)
            let hash = Data(SHA256.hash(data: Data(style.utf8))).base64EncodedString()
            #expect(policy.contains("style-src 'sha256-\(hash)'"))
            #expect(browser.headers[.xContentTypeOptions] == "nosniff")

            for accept in ["application/json", "*/*", "text/html;q=0"] {
                let api = try await client.call(.get, "/", headers: [.accept: accept])
                #expect(
                    api.status == .ok && api.headers[.contentType] == "application/json; charset=utf-8", "\(accept)")
                #expect(api.string("name") == "Tessera")
                #expect((api.json["links"] as? [String: String])?["openapi"] == "/openapi.json")
            }
            let bare = try await client.call(.get, "/")
            #expect((bare.json["links"] as? [String: String])?["docs"] == "/docs")

            let docs = try await client.call(.get, "/docs", headers: [.accept: "text/html"])
            #expect(docs.status == .ok && docs.headers[.contentType] == "text/html; charset=utf-8")
            #expect(docs.text.contains("/orgs/{org}/api-tokens/{tokenUUID}/rotate"))
            #expect(docs.text.contains("Forward-auth for gateways"))
        }
    }
}
