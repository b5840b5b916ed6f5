import Foundation
import PostgresNIO
import TesseraCore
import TesseraLocalPostgres
import TesseraPostgres
import TesseraServices
import TesseraTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real `tessera serve` on a real database, driven by the real CLI binary (issue #6).
struct ServerProcess {
    let running: Subprocess.Running
    let endpoint: String
    let databaseURL: String

    static func start(databaseURL: String) async throws -> ServerProcess {
        for _ in 0..<5 {
            let port = Int.random(in: 20_000..<60_000)
            let running = try Subprocess.start(
                CLI.binary, ["serve"],
                environment: ProcessInfo.processInfo.environment.merging(
                    ["DATABASE_URL": databaseURL, "TESSERA_PORT": "\(port)", "TESSERA_LOG_LEVEL": "warning"]) {
                        _, new in new
                    })
            let endpoint = "http://127.0.0.1:\(port)"
            for _ in 0..<300 {
                if let (_, response) = try? await URLSession.shared.data(from: URL(string: endpoint + "/readyz")!),
                    (response as? HTTPURLResponse)?.statusCode == 200
                {
                    return ServerProcess(running: running, endpoint: endpoint, databaseURL: databaseURL)
                }
                if kill(running.pid, 0) != 0 { break }  // exited (port taken?): try another port
                try await Task.sleep(for: .milliseconds(50))
            }
            running.stop()
        }
        throw CLIFailure(message: "tessera serve did not start")
    }

    func verify(_ token: String) async throws -> Int {
        var request = URLRequest(url: URL(string: endpoint + "/auth/verify")!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }
}

struct CLIFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

@Suite(.serialized) struct ClientCLITests {
    /// Runs the CLI with a private login file and no inherited Tessera settings.
    func tessera(_ arguments: [String], _ env: [String: String]) throws -> Subprocess.Outcome {
        var environment = env
        for name in ["TESSERA_ENDPOINT", "TESSERA_API_KEY", "TESSERA_ORG"] where environment[name] == nil {
            environment[name] = ""
        }
        return try CLI.run(arguments, environment: environment)
    }

    /// A fresh database with org `acme` bootstrapped (admin `root`, whose token is returned) and a
    /// real `tessera serve` on it.
    func bootstrappedServer() async throws -> (root: String, server: ServerProcess) {
        let url = try await TestPostgres.shared.makeDatabase()
        let databaseURL = "\(url.description)?sslmode=disable"
        let boot = try CLI.run(
            ["bootstrap", "--org", "acme", "--admin", "root", "--json"], environment: ["DATABASE_URL": databaseURL])
        let root = try #require(
            (try JSONSerialization.jsonObject(with: Data(boot.stdout.utf8)) as? [String: String])?["token"])
        return (root, try await ServerProcess.start(databaseURL: databaseURL))
    }

    /// `tessera webhook …` against a real server (issue #16): the secret printed once, the list
    /// without it, rotation, the delivery log, a private target refused, removal.
    @Test func webhookCommands() async throws {
        let (root, server) = try await bootstrappedServer()
        defer { server.running.stop() }
        let env = ["TESSERA_ENDPOINT": server.endpoint, "TESSERA_API_KEY": root, "NO_COLOR": "1"]
        // A documentation address (TEST-NET-3): public, so allowed; nothing answers there.
        let added = try tessera(
            ["webhook", "add", "https://203.0.113.10/hook", "--event", "token.created", "-o", "json"], env)
        #expect(added.status == 0, "\(added.stderr)")
        let hook = try #require(try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any])
        let id = try #require(hook["id"] as? String)
        let secret = try #require(hook["secret"] as? String)
        #expect(secret.hasPrefix("whsec_") && id == id.lowercased())
        let list = try tessera(["webhook", "list"], env)
        #expect(
            list.status == 0 && list.stdout.contains("https://203.0.113.10/hook") && !list.stdout.contains("whsec_"))
        let refused = try tessera(["webhook", "add", "http://127.0.0.1:9/hook"], env)
        #expect(refused.status != 0 && refused.stderr.contains("TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS"))
        let rotated = try tessera(["webhook", "update", id, "--rotate-secret"], env)
        #expect(rotated.status == 0 && rotated.stdout.contains("whsec_") && !rotated.stdout.contains(secret))
        #expect(try tessera(["token", "create", "ci", "--org-token", "--label", "ci-bot", "-q"], env).status == 0)
        let log = try tessera(["webhook", "deliveries", id, "-o", "json"], env)
        let deliveries =
            (try JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [String: Any])?["deliveries"]
            as? [[String: Any]]
        #expect(deliveries?.first?["event"] as? String == "token.created")
        let delivery = try #require(deliveries?.first?["id"] as? String)
        #expect(try tessera(["webhook", "redeliver", id, delivery], env).status == 0)
        #expect(try tessera(["webhook", "remove", id, "--yes"], env).status == 0)
        let after = try tessera(["webhook", "list", "-o", "json"], env)
        #expect(
            (try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [String: Any])?["webhooks"] as? [Any]
                != nil)
        #expect(!after.stdout.contains(id))
    }

    @Test func loginCreateListUpdateRotateDeleteAndRemove() async throws {
        let (root, server) = try await bootstrappedServer()
        defer { server.running.stop() }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-cli-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let env = ["TESSERA_CONFIG": folder + "/config.json", "NO_COLOR": "1"]

        // login: checked against the server, saved 0600.
        let login = try tessera(["login", "--endpoint", server.endpoint, "--token", root], env)
        #expect(login.status == 0, "\(login.stderr)")
        #expect(login.stderr.contains("Logged in to \(server.endpoint) as root in acme"))
        let mode = try FileManager.default.attributesOfItem(atPath: folder + "/config.json")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(
            try tessera(
                ["login", "--endpoint", server.endpoint, "--token", "tsp_nope"],
                ["TESSERA_CONFIG": folder + "/other.json"]
            ).status == 1)
        let whoami = try tessera(["whoami"], env)
        #expect(whoami.status == 0 && whoami.stdout.contains("root") && whoami.stdout.contains("acme"))

        // Members and tokens.
        #expect(try tessera(["member", "add", "alice", "--group", "dev"], env).status == 0)
        let alice = try tessera(["token", "create", "alice laptop", "--for", "alice", "-q"], env)
        #expect(alice.status == 0, "\(alice.stderr)")
        let aliceToken = alice.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(TokenSecret.isWellFormed(aliceToken), "-q prints only the token")

        let boxed = try tessera(
            ["token", "create", "ci", "--org-token", "--label", "ci-bot", "-s", "api:read", "--expires", "30d"], env)
        #expect(boxed.status == 0, "\(boxed.stderr)")
        #expect(boxed.stdout.contains("will not be shown again") && boxed.stdout.contains("┌"))
        #expect(boxed.stdout.contains("tso_"))

        let json = try tessera(
            ["token", "create", "deploy", "--org-token", "--label", "deployer", "-o", "json", "--expires", "1w"], env)
        let created = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect((created["token"] as? String)?.hasPrefix("tso_") == true)
        #expect(created["kind"] as? String == "organization")
        let deployID = try #require(created["tokenUUID"] as? String)
        let yaml = try tessera(["token", "get", deployID, "-o", "yaml"], env)
        #expect(yaml.status == 0)
        #expect(yaml.stdout.contains("name: deploy") && yaml.stdout.contains("kind: organization"))
        #expect(yaml.stdout.contains("tokenUUID: \(deployID)"))
        #expect(yaml.stdout.range(of: #"ts[po]_[0-9a-f]{128}"#, options: .regularExpression) == nil)  // never again

        let list = try tessera(["token", "list", "--search", "ci"], env)
        #expect(list.status == 0)
        #expect(list.stdout.hasPrefix("ID"))
        #expect(list.stdout.contains("ci-bot") && !list.stdout.contains("alice laptop"))
        let all = try tessera(["token", "list", "--all", "--limit", "1", "-o", "json"], env)
        #expect(
            (try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [String: Any])?["tokens"].map {
                ($0 as? [Any])?.count
            } == 4)

        // Update, rotate, delete.
        let updated = try tessera(["token", "update", deployID, "--name", "deploy-2", "--deactivate"], env)
        #expect(updated.status == 0 && updated.stdout.contains("deploy-2") && updated.stdout.contains("inactive"))
        #expect(try tessera(["token", "update", deployID, "--activate"], env).stdout.contains("active"))
        let rotated = try tessera(["token", "rotate", deployID, "--overlap", "1h", "-q"], env)
        #expect(rotated.status == 0, "\(rotated.stderr)")
        #expect(TokenSecret.isWellFormed(rotated.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        let again = try tessera(["token", "rotate", deployID], env)
        #expect(again.status == 1 && again.stderr.hasPrefix("tessera: error: 409 "))
        #expect(try tessera(["token", "delete", deployID, "--yes"], env).status == 0)
        let gone = try tessera(["token", "get", deployID], env)
        #expect(gone.status == 1 && gone.stderr == "tessera: error: 404 Token not found\n")
        #expect(try tessera(["token", "delete", deployID], env).status == 2)  // no --yes, no terminal

        // A removed member's token fails at once.
        #expect(try await server.verify(aliceToken) == 200)
        #expect(try tessera(["member", "remove", "alice", "--yes"], env).status == 0)
        #expect(try await server.verify(aliceToken) == 401)
        let aliceWho = try tessera(["whoami"], ["TESSERA_ENDPOINT": server.endpoint, "TESSERA_API_KEY": aliceToken])
        #expect(aliceWho.status == 1 && aliceWho.stderr.contains("401 The token has been revoked"))

        // Org policy and audit.
        let policy = try tessera(
            ["org", "set-policy", "--idle-timeout-days", "30", "--max-lifetime-days", "none"], env)
        #expect(policy.status == 0 && policy.stdout.contains("30 days"))
        let audit = try tessera(["audit", "list", "--action", "member.removed"], env)
        #expect(audit.status == 0 && audit.stdout.contains("member.removed") && audit.stdout.contains("alice"))

        // Usage errors exit 2 with a clear line; the server saying no exits 1.
        let badExpiry = try tessera(["token", "create", "x", "--expires", "soon"], env)
        #expect(badExpiry.status == 2)
        #expect(badExpiry.stderr.contains("--expires soon is not understood"))
        let past = try tessera(["token", "create", "x", "--expires", "2001-01-01"], env)
        #expect(past.status == 2 && past.stderr.contains("is in the past"))
        #expect(try tessera(["token", "create", "x", "--org-token"], env).status == 2)
        #expect(try tessera(["token", "list", "--limit"], env).status == 2)
        let refused = try tessera(["token", "create", "x", "-s", "no:such"], env)
        #expect(refused.status == 1 && refused.stderr.hasPrefix("tessera: error: 400 Unknown scope"))

        // Nothing ever printed a secret to stderr.
        for outcome in [login, whoami, alice, boxed, json, list, updated, rotated] {
            #expect(outcome.stderr.range(of: #"ts[po]_[0-9a-f]{128}"#, options: .regularExpression) == nil)
        }

        // Server down: exit 1 with one clear line.
        server.running.stop()
        let down = try tessera(["token", "list"], env)
        #expect(down.status == 1)
        #expect(down.stderr.hasPrefix("tessera: error: cannot reach Tessera at \(server.endpoint)"))
        #expect(down.stderr.split(separator: "\n").count == 1)
    }

    /// The login file follows `$XDG_CONFIG_HOME`, then `$HOME`, as every Unix CLI does (#11); and
    /// `org set-policy --max-lifetime-days` alone gets the cap (the default lifetime follows it).
    @Test func loginFileFollowsXDGThenHomeAndACapIsACap() async throws {
        let (root, server) = try await bootstrappedServer()
        defer { server.running.stop() }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-home-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: folder) }

        let home = ["HOME": folder + "/home", "XDG_CONFIG_HOME": "", "TESSERA_CONFIG": "", "NO_COLOR": "1"]
        let login = try tessera(["login", "--endpoint", server.endpoint, "--token", root], home)
        #expect(login.status == 0, "\(login.stderr)")
        #expect(login.stderr.contains("saved to \(folder)/home/.config/tessera/config.json"))
        #expect(FileManager.default.fileExists(atPath: folder + "/home/.config/tessera/config.json"))
        #expect(try tessera(["whoami"], home).stdout.contains("root"))

        var xdg = home
        xdg["XDG_CONFIG_HOME"] = folder + "/xdg"
        #expect(try tessera(["whoami"], xdg).status == 2, "not logged in under XDG_CONFIG_HOME yet")
        #expect(try tessera(["login", "--endpoint", server.endpoint, "--token", root], xdg).status == 0)
        #expect(FileManager.default.fileExists(atPath: folder + "/xdg/tessera/config.json"))

        let capped = try tessera(["org", "set-policy", "--max-lifetime-days", "30", "-o", "json"], xdg)
        #expect(capped.status == 0, "\(capped.stderr)")
        let org = try #require(try JSONSerialization.jsonObject(with: Data(capped.stdout.utf8)) as? [String: Any])
        #expect(org["maxTokenLifetimeDays"] as? Int == 30 && org["defaultTokenLifetimeDays"] as? Int == 30)
    }

    /// `tessera login --web` (#13): prints the page and the code, polls, saves the token it gets
    /// once the code is approved (here straight in the database; the console's approval page has
    /// its own tests).
    @Test func loginWebWaitsForTheApprovalAndSavesTheToken() async throws {
        let (_, server) = try await bootstrappedServer()
        defer { server.running.stop() }
        let url = try DatabaseURL(server.databaseURL)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-web-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var environment = ProcessInfo.processInfo.environment
        environment.merge(["TESSERA_CONFIG": folder + "/config.json", "DISPLAY": "", "TESSERA_API_KEY": ""]) { _, new in
            new
        }
        environment["DISPLAY"] = nil
        let login = try Subprocess.start(
            CLI.binary, ["login", "--web", "--endpoint", server.endpoint], environment: environment)
        defer { login.stop() }
        var code: String?
        for _ in 0..<100 where code == nil {
            let printed = (try? String(contentsOfFile: login.log + ".err", encoding: .utf8)) ?? ""
            code = printed.range(of: #"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}"#, options: .regularExpression).map {
                String(printed[$0])
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(code != nil, "the login page and code are printed")
        try await withRunningClient(url) { client, _ in
            try await client.query(
                """
                UPDATE cli_login_codes SET approved_by = (SELECT id FROM users WHERE username = 'root'),
                    org_id = (SELECT id FROM organizations WHERE slug = 'acme'), token_name = 'web login', approved_at = now(),
                    last_poll_at = NULL
                """)
            try await client.query("UPDATE organizations SET personal_token_limit = 2")
        }
        var status: Int32 = -1
        for _ in 0..<100 {
            var raw: Int32 = 0
            if waitpid(login.pid, &raw, WNOHANG) == login.pid { status = (raw >> 8) & 0xFF; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let printed = (try? String(contentsOfFile: login.log + ".err", encoding: .utf8)) ?? ""
        #expect(status == 0, "\(printed)")
        #expect(printed.contains("Logged in to \(server.endpoint) as root"))
        let saved = try #require(FileManager.default.contents(atPath: folder + "/config.json"))
        let key = try #require((try JSONSerialization.jsonObject(with: saved) as? [String: Any])?["apiKey"] as? String)
        #expect(try await server.verify(key) == 200)
    }

    @Test func adminCommandsWorkOnTheDatabaseWithTheSameCascade() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        let db = ["DATABASE_URL": "\(url.description)?sslmode=disable"]
        #expect(try CLI.run(["admin", "org", "create", "beta", "--name", "Beta Inc"], environment: db).status == 0)
        #expect(try CLI.run(["admin", "org", "create", "beta"], environment: db).stderr.contains("already exists"))
        #expect(try CLI.run(["admin", "org", "create", "Not A Slug"], environment: db).status == 2)
        let orgs = try CLI.run(["admin", "org", "list", "-o", "json"], environment: db)
        #expect(orgs.stdout.contains("\"slug\" : \"beta\"") || orgs.stdout.contains("\"slug\": \"beta\""))
        #expect(
            try CLI.run(["admin", "member", "add", "beta", "bob", "--role", "admin"], environment: db).stdout.contains(
                "Added bob"))

        // bob gets a personal token through the store; disabling him through the CLI revokes it,
        // with the same audit events the HTTP API writes.
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let org = try #require(try await OrganizationService(store: store).organization(slug: "beta"))
            let bob = try #require(try await UserService(store: store).user(named: "bob"))
            let tokenID = try await store.transaction { connection in
                try await TokenRepository(connection, logger: logger).insert(
                    NewTokenRow(
                        orgID: org.id, kind: .personal, ownerUserID: bob.id, username: "bob", name: "bob",
                        description: nil,
                        scopes: ["api:read"], groups: [], secret: .generate(kind: .personal), expiresAt: nil,
                        createdAt: Date(),
                        createdBy: "bob", createdByUserID: bob.id))
            }
            func state() async throws -> String {
                let rows = try await client.query(
                    "SELECT status || coalesce(':' || revoked_reason, '') FROM tokens WHERE id = \(tokenID)")
                for try await value in rows.decode(String.self) { return value }
                return "gone"
            }
            #expect(try await state() == "active")
            #expect(try CLI.run(["admin", "user", "disable", "bob"], environment: db).status == 0)
            #expect(try await state() == "revoked:owner_disabled")
            let actions = try await client.query(
                "SELECT action FROM audit_events WHERE actor_kind = 'cli' ORDER BY id"
            ).decode(String.self)
            var seen: [String] = []
            for try await action in actions { seen.append(action) }
            #expect(seen == ["org.created", "member.added", "token.revoked", "user.updated"])
        }
        #expect(try CLI.run(["admin", "user", "enable", "bob"], environment: db).status == 0)
        #expect(try CLI.run(["admin", "member", "remove", "beta", "bob"], environment: db).status == 0)
        #expect(try CLI.run(["admin", "member", "remove", "beta", "bob"], environment: db).status == 1)
        #expect(try CLI.run(["admin", "user", "delete", "bob", "--yes"], environment: db).status == 0)
        #expect(
            try CLI.run(["admin", "user", "delete", "bob", "--yes"], environment: db).stderr
                == "tessera: error: no user bob\n")
    }
}
