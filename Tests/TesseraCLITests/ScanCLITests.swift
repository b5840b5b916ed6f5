import Foundation
import TesseraCore
import TesseraLocalPostgres
import TesseraPostgres
import TesseraTestSupport
import Testing

/// `tessera scan` on a real tree (issue 16, leak response); only `--report` needs a database and
/// a real `tessera serve`.
@Suite struct ScanCLITests {
    let personal = TokenSecret.generate(kind: .personal)
    let organization = TokenSecret.generate(kind: .organization)

    /// A fresh folder; the caller removes it.
    func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-scan-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// A tree with two real tokens, near misses, random hex, and tokens in places the scan skips.
    func leakyTree(_ root: String) throws {
        let token = personal.plaintext
        let randomHex = (0..<200).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        try write("# settings\n\nAPI_KEY=\(token)\n", to: root + "/config/app.env")
        try write(
            "let a = \"\(organization.plaintext)\"\nlet b = \"\(token)\" // again\n", to: root + "/src/main.swift")
        try write(
            [
                String(token.dropLast()), token + "0", "0" + token, token.uppercased(),
                "tsp_" + randomHex.prefix(128), "tso_" + randomHex.suffix(128), randomHex,
            ].joined(separator: "\n"), to: root + "/near-misses.txt")
        try write("steps:\n  - env: { TESSERA_API_KEY: \(token) }\n", to: root + "/.buildkite/pipeline.yml")
        // Skipped: version control, build output, dependencies, binaries, big files, linked folders.
        try write(token, to: root + "/.git/config")
        try write(token, to: root + "/.build/debug/x.json")
        try write(token, to: root + "/.build-linux/x.json")
        try write(token, to: root + "/node_modules/pkg/index.js")
        try Data([0x7F, 0x45, 0x4C, 0x46, 0] + Array(token.utf8)).write(to: URL(fileURLWithPath: root + "/app.bin"))
        try (Data(repeating: UInt8(ascii: "\n"), count: 10 << 20) + Data(token.utf8))
            .write(to: URL(fileURLWithPath: root + "/big.log"))
        let outside = try folder()
        try write(token, to: outside + "/secret.txt")
        try FileManager.default.createSymbolicLink(atPath: root + "/linked", withDestinationPath: outside)
    }

    @Test func findsTokensRedactedAndSkipsWhatItShould() throws {
        let root = try folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try leakyTree(root)

        let outcome = try CLI.run(["scan", root])
        #expect(outcome.status == 1, "\(outcome.stderr)")
        let p = personal.displayPrefix
        let o = organization.displayPrefix
        #expect(
            outcome.stdout == """
                \(root)/.buildkite/pipeline.yml:2:29: \(p)… (personal token)
                \(root)/config/app.env:3:9: \(p)… (personal token)
                \(root)/src/main.swift:1:10: \(o)… (organization token)
                \(root)/src/main.swift:2:10: \(p)… (personal token)

                """)
        #expect(outcome.stderr.isEmpty)
        for secret in [personal, organization] {
            #expect(!outcome.stdout.contains(secret.plaintext))
            #expect(!outcome.stdout.contains(secret.plaintext.prefix(20)))
        }

        // A file named on the command line; --quiet prints nothing.
        let file = try CLI.run(["scan", root + "/config/app.env"])
        #expect(file.status == 1)
        #expect(file.stdout == "\(root)/config/app.env:3:9: \(p)… (personal token)\n")
        let quiet = try CLI.run(["scan", "--quiet", root])
        #expect(quiet.status == 1)
        #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty)
    }

    @Test func cleanTreeExitsZero() throws {
        let root = try folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("nothing to see\ntsp_\(String(repeating: "0", count: 128))\n", to: root + "/a.txt")
        try write(personal.plaintext, to: root + "/.git/config")
        let outcome = try CLI.run(["scan", root, root + "/a.txt"])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.stdout.isEmpty && outcome.stderr.isEmpty)
    }

    @Test func readsStandardInput() throws {
        let root = try folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("commit 1\n+  token: \(organization.plaintext)\n", to: root + "/log.txt")
        // Subprocess gives the child /dev/null as stdin: a shell redirects the file instead.
        let outcome = try Subprocess.run(
            "/bin/sh", ["-c", "exec \"$0\" scan - < \"$1\"", CLI.binary, root + "/log.txt"])
        #expect(outcome.status == 1, "\(outcome.stderr)")
        #expect(outcome.stdout == "<stdin>:2:11: \(organization.displayPrefix)… (organization token)\n")
        #expect(try CLI.run(["scan", "-"]).status == 0)  // /dev/null: nothing found
    }

    @Test func errorsExitTwo() throws {
        let root = try folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("KEY=\(personal.plaintext)\n", to: root + "/a.env")

        // A missing path: reported, the rest still scanned, exit 2.
        let missing = try CLI.run(["scan", root + "/nope", root])
        #expect(missing.status == 2)
        #expect(missing.stderr == "tessera: error: cannot read \(root)/nope: No such file or directory\n")
        #expect(missing.stdout == "\(root)/a.env:1:5: \(personal.displayPrefix)… (personal token)\n")

        // --report: not an http(s) URL is a usage error; an unreachable server is exit 2 after the findings.
        let badURL = try CLI.run(["scan", "--report", "ftp://example.com", root])
        #expect(badURL.status == 2)
        #expect(badURL.stderr.hasPrefix("tessera: error: endpoint ftp://example.com is not an http(s) URL"))
        let down = try CLI.run(["scan", "--report", "http://127.0.0.1:1/credentials/revoke", root])
        #expect(down.status == 2)
        #expect(down.stdout.contains("a.env:1:5: "))
        #expect(
            down.stderr.hasPrefix(
                "tessera: error: reporting to 127.0.0.1:1 failed: cannot reach Tessera at http://127.0.0.1:1"))
        #expect(!down.stderr.contains(personal.plaintext))
    }

    @Test func reportRevokesTheTokensFound() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        let databaseURL = "\(url.description)?sslmode=disable"
        let boot = try CLI.run(
            ["bootstrap", "--org", "acme", "--admin", "root", "--json"], environment: ["DATABASE_URL": databaseURL])
        let root = try #require(
            (try JSONSerialization.jsonObject(with: Data(boot.stdout.utf8)) as? [String: String])?["token"])
        let server = try await ServerProcess.start(databaseURL: databaseURL)
        defer { server.running.stop() }
        #expect(try await server.verify(root) == 200)

        let folder = try folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try write("TOKEN=\(root)\n# again: \(root)\n", to: folder + "/ci.env")
        let outcome = try CLI.run(["scan", "--report", server.endpoint + "/", folder])
        #expect(outcome.status == 1, "\(outcome.stderr)")
        #expect(outcome.stdout.split(separator: "\n").count == 2)
        let host = try #require(URL(string: server.endpoint)).port.map { "127.0.0.1:\($0)" }
        #expect(outcome.stderr == "reported 1 token(s) to \(try #require(host))\n")
        #expect(try await server.verify(root) == 401)

        // The full URL works too (the server answers 202 for a token already revoked).
        let again = try CLI.run(["scan", "-q", "--report", server.endpoint + "/credentials/revoke", folder])
        #expect(again.status == 1, "\(again.stderr)")
        #expect(again.stdout.isEmpty && again.stderr.isEmpty)
    }
}
