import Foundation
import TesseraLocalPostgres
import TesseraPostgres
import Testing

/// No Docker engine runs on our machines: the deployment files are checked for what they say
/// (issue #6). Compose is parsed as YAML (python3's PyYAML, as on these machines), and its
/// environment names are checked against the names the sources actually read.
@Suite struct DockerFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static func text(_ path: String) throws -> String { try String(contentsOfFile: root + "/" + path, encoding: .utf8) }

    /// Every `"TESSERA_…"` and `DATABASE_URL` name a source file mentions.
    static func namesTheBinaryReads() throws -> Set<String> {
        var names: Set<String> = ["DATABASE_URL"]
        let enumerator = FileManager.default.enumerator(atPath: root + "/Sources")!
        for case let file as String in enumerator where file.hasSuffix(".swift") {
            let source = try text("Sources/" + file)
            let regex = try NSRegularExpression(pattern: #""(TESSERA_[A-Z_]+)""#)
            for match in regex.matches(in: source, range: NSRange(source.startIndex..., in: source)) {
                names.insert(String(source[Range(match.range(at: 1), in: source)!]))
            }
        }
        return names
    }

    func compose() throws -> [String: Any] {
        let outcome = try Subprocess.run(
            "/usr/bin/env",
            [
                "python3", "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                Self.root + "/docker/compose.yaml",
            ])
        try #require(outcome.status == 0, "compose.yaml does not parse: \(outcome.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any])
    }

    @Test func composeHasDatabaseMigrateAndServerWiredTogether() throws {
        let services = try #require(try compose()["services"] as? [String: [String: Any]])
        #expect(Set(services.keys) == ["postgres", "migrate", "tessera"])

        let postgres = try #require(services["postgres"])
        #expect((postgres["healthcheck"] as? [String: Any])?["test"] != nil)
        #expect((postgres["volumes"] as? [String])?.contains("pgdata:/var/lib/postgresql/data") == true)

        let migrate = try #require(services["migrate"])
        #expect(migrate["command"] as? [String] == ["migrate"])
        #expect(migrate["restart"] as? String == "no")
        #expect(
            ((migrate["depends_on"] as? [String: Any])?["postgres"] as? [String: String])?["condition"]
                == "service_healthy")
        #expect((migrate["build"] as? [String: String])?["dockerfile"] == "docker/Dockerfile")

        let server = try #require(services["tessera"])
        #expect(server["command"] as? [String] == ["serve"])
        let dependsOn = try #require(server["depends_on"] as? [String: [String: String]])
        #expect(dependsOn["migrate"]?["condition"] == "service_completed_successfully")
        #expect(dependsOn["postgres"]?["condition"] == "service_healthy")
        let environment = try #require(server["environment"] as? [String: Any])
        let port = try #require(environment["TESSERA_PORT"] as? String)
        #expect((server["ports"] as? [String])?.allSatisfy { $0.hasSuffix(":\(port)") } == true)
        #expect(environment["TESSERA_HOST"] as? String == "0.0.0.0")

        // Every setting handed to the binary is one it reads.
        let known = try Self.namesTheBinaryReads()
        for service in [migrate, server] {
            for name in (service["environment"] as? [String: Any] ?? [:]).keys {
                #expect(known.contains(name), "compose sets \(name), which tessera does not read")
            }
        }
        #expect((try compose()["volumes"] as? [String: Any])?["pgdata"] != nil)
    }

    @Test func everyRequiredComposeVariableIsInTheEnvExample() throws {
        let compose = try Self.text("docker/compose.yaml")
        let example = Set(
            try Self.text("docker/.env.example").split(separator: "\n")
                .filter { !$0.hasPrefix("#") && $0.contains("=") }.map { String($0.split(separator: "=")[0]) })
        let regex = try NSRegularExpression(pattern: #"\$\{([A-Z_]+)"#)
        let used = Set(
            regex.matches(in: compose, range: NSRange(compose.startIndex..., in: compose)).map {
                String(compose[Range($0.range(at: 1), in: compose)!])
            })
        #expect(!used.isEmpty)
        #expect(used.subtracting(example).isEmpty, "not in .env.example: \(used.subtracting(example))")
    }

    @Test func dockerfileBuildsWhatTheMakefileBuilds() throws {
        let makefile = try Self.text("Makefile")
        let flags = try #require(
            makefile.split(separator: "\n").first { $0.hasPrefix("RELEASE_FLAGS :=") }?
                .replacingOccurrences(of: "RELEASE_FLAGS :=", with: "").trimmingCharacters(in: .whitespaces))
        let dockerfile = try Self.text("docker/Dockerfile")
        #expect(dockerfile.contains("swift build \(flags)"))
        #expect(dockerfile.contains("FROM swift:6"))
        #expect(dockerfile.contains("FROM debian:bookworm-slim"))
        #expect(dockerfile.contains("USER tessera"))
        #expect(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/readyz"))
        #expect(dockerfile.contains("share/tessera/sql"))  // where the binary looks for migrations
        #expect(dockerfile.contains("share/tessera/web"))  // and for the console's templates
        #expect(dockerfile.contains(#"ENTRYPOINT ["tessera"]"#))
    }
}
