import Foundation
import TesseraCore
import TesseraLocalPostgres
import TesseraPostgres
import TesseraTestSupport
import Testing

/// Runs the real `tessera` binary (`TESSERA_BIN`, default `.build/debug/tessera` of this checkout).
struct CLI {
    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["TESSERA_BIN"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/tessera").path
    }()

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Subprocess.Outcome {
        var env = ProcessInfo.processInfo.environment
        env["DATABASE_URL"] = nil
        env.merge(environment) { _, new in new }
        return try Subprocess.run(binary, arguments, environment: env)
    }
}

@Suite struct CLITests {
    @Test func migrateTwiceThenBootstrapPrintsOneValidToken() async throws {
        let url = try await TestPostgres.shared.makeEmptyDatabase()
        let env = ["DATABASE_URL": "\(url.description)?sslmode=disable"]
        let first = try CLI.run(["migrate"], environment: env)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("applied 0001_init"))
        let second = try CLI.run(["migrate"], environment: env)
        #expect(second.status == 0)
        #expect(second.stdout.contains("up to date"))

        let bootstrap = try CLI.run(["bootstrap", "--org", "acme", "--admin", "root", "--json"], environment: env)
        #expect(bootstrap.status == 0, "\(bootstrap.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(bootstrap.stdout.utf8)) as? [String: String]
        #expect(object?["organization"] == "acme")
        #expect(object?["username"] == "root")
        #expect(UUID(uuidString: object?["tokenUUID"] ?? "") != nil)
        let token = try #require(object?["token"])
        #expect(try TokenSecret(parsing: token).kind == .personal)
        #expect(!bootstrap.stderr.contains(token))

        let again = try CLI.run(["bootstrap", "--org", "acme", "--admin", "root"], environment: env)
        #expect(again.status == 1)
        #expect(
            again.stderr
                == "tessera: error: organization \"acme\" already exists; bootstrap runs once per organization\n")
        #expect(again.stdout.isEmpty)
    }

    @Test func serveRefusesPendingMigrations() async throws {
        let url = try await TestPostgres.shared.makeEmptyDatabase()
        let outcome = try CLI.run(
            ["serve", "--port", "0"], environment: ["DATABASE_URL": "\(url.description)?sslmode=disable"])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("pending migrations"))
        #expect(outcome.stderr.split(separator: "\n").count == 1)
    }

    @Test func shortJWTSecretIsAClearError() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        let outcome = try CLI.run(
            ["serve", "--port", "0"],
            environment: ["DATABASE_URL": "\(url.description)?sslmode=disable", "TESSERA_JWT_SECRET": "short"])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("tessera: error: TESSERA_JWT_SECRET must be at least 32 bytes"))
        #expect(!outcome.stderr.contains("short\""))
    }

    @Test func badPoolSizeIsAClearError() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        let outcome = try CLI.run(
            ["serve", "--port", "0"],
            environment: ["DATABASE_URL": "\(url.description)?sslmode=disable", "TESSERA_DB_POOL_SIZE": "lots"])
        #expect(outcome.status == 1)
        #expect(
            outcome.stderr == "tessera: error: TESSERA_DB_POOL_SIZE=lots is not a number of connections from 1 to 200\n"
        )
    }

    @Test func badSlugIsAUsageError() throws {
        let outcome = try CLI.run(
            ["bootstrap", "--org", "Bad Slug", "--admin", "root"],
            environment: ["DATABASE_URL": "postgres://x@127.0.0.1:1/x"])
        #expect(outcome.status == 2)
        #expect(outcome.stderr.hasPrefix("tessera: error: organization slug \"Bad Slug\" is invalid"))
        #expect(outcome.stderr.split(separator: "\n").count == 1)
    }

    @Test func badUsernameIsAUsageError() throws {
        let outcome = try CLI.run(
            ["bootstrap", "--org", "acme", "--admin", "../root"],
            environment: ["DATABASE_URL": "postgres://x@127.0.0.1:1/x"])
        #expect(outcome.status == 2)
        #expect(outcome.stderr.hasPrefix("tessera: error: username \"../root\" is invalid"))
    }

    @Test func missingDatabaseURL() throws {
        let outcome = try CLI.run(["migrate"])
        #expect(outcome.status == 1)
        #expect(
            outcome.stderr
                == "tessera: error: DATABASE_URL is not set (or pass --database-url postgres://user@host:5432/db)\n")
    }

    @Test func malformedDatabaseURL() throws {
        let outcome = try CLI.run(["migrate"], environment: ["DATABASE_URL": "mysql://nope"])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.hasPrefix("tessera: error: DATABASE_URL must look like"))
    }

    @Test func unreachableDatabaseFailsFastWithOneLine() throws {
        let started = Date()
        let outcome = try CLI.run(
            ["bootstrap", "--org", "acme", "--admin", "root"],
            environment: ["DATABASE_URL": "postgres://tessera:secret-pw@127.0.0.1:1/tessera?sslmode=disable"])
        #expect(outcome.status == 1)
        #expect(
            outcome.stderr.hasPrefix(
                "tessera: error: cannot reach the database at postgres://tessera@127.0.0.1:1/tessera"))
        #expect(outcome.stderr.split(separator: "\n").count == 1)
        #expect(!outcome.stderr.contains("secret-pw"))
        #expect(Date().timeIntervalSince(started) < 30)
    }
}
