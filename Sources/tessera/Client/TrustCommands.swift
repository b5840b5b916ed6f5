import ArgumentParser
import Foundation
import TesseraAPI

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `tessera trust …`: an org admin's trust policies, which let CI exchange its OIDC token for a
/// short-lived organization token (DESIGN §13).
struct TrustCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trust",
        abstract: "Manage the trust policies that let CI exchange its OIDC token for a token (admins).",
        subcommands: [List.self, Add.self, Show.self, Remove.self])

    static func path(_ client: APIClient, _ org: String, _ rest: String = "") -> String {
        "/orgs/\(client.escape(org))/trust-policies" + rest
    }

    static let githubIssuer = "https://token.actions.githubusercontent.com"
    static let gitlabIssuer = "https://gitlab.com"

    static func conditions(_ policy: TrustPolicyInfo) -> String {
        policy.conditions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    static func show(_ policy: TrustPolicyInfo, printer: Printer) {
        printer.fields([
            ("Id", policy.id), ("Name", policy.name), ("Issuer", policy.issuer), ("Audience", policy.audience),
            ("Conditions", conditions(policy)), ("Scopes", Printer.text(policy.scopes)),
            ("Token lifetime", "\(policy.maxLifetimeSeconds) s"), ("Label", policy.label),
            ("Live tokens", String(policy.liveTokens)), ("Created by", policy.createdBy),
        ])
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List trust policies.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let client = try options.client()
            let reply = try await client.send(
                "GET", TrustCommand.path(client, try await actingOrg(client)), as: TrustPolicyList.self)
            let printer = options.printer
            if printer.structured(reply) { return }
            printer.table(
                ["ID", "NAME", "ISSUER", "CONDITIONS", "SCOPES", "LIVE"],
                reply.trustPolicies.map {
                    [
                        $0.id, $0.name, $0.issuer, TrustCommand.conditions($0), Printer.text($0.scopes),
                        String($0.liveTokens),
                    ]
                })
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Trust an issuer's OIDC tokens whose claims match every --condition.",
            discussion: """
                Example, GitHub Actions on the main branch of acme/app:
                  tessera trust add deploy --github-repository acme/app --condition ref=refs/heads/main \\
                    --audience https://tessera.example.com --scope api:write
                """)
        @OptionGroup var options: ClientOptions
        @Argument(help: "Policy name.") var name: String
        @Option(help: "Issuer URL (https). Implied by --github-repository and --gitlab-project.") var issuer: String?
        @Option(help: "The audience the OIDC token must carry (its aud).") var audience: String
        @Option(name: .customLong("condition"), help: "claim=pattern, `*` matching any run (repeatable).")
        var conditions: [String] = []
        @Option(name: .customLong("github-repository"), help: "GitHub Actions of owner/repo (issuer and condition).")
        var githubRepository: String?
        @Option(name: .customLong("gitlab-project"), help: "GitLab.com CI of group/project (issuer and condition).")
        var gitlabProject: String?
        @Option(name: [.short, .customLong("scope")], help: "A scope the exchanged token gets (repeatable).")
        var scopes: [String] = []
        @Option(name: .customLong("max-lifetime"), help: "Seconds an exchanged token lives, 60-3600 (default 900).")
        var maxLifetime: Int?
        @Option(help: "Service label of the exchanged tokens (default ci).") var label: String?

        func run() async throws {
            var patterns: [String: String] = [:]
            var issuer = issuer
            if let repository = githubRepository {
                issuer = issuer ?? TrustCommand.githubIssuer
                patterns["repository"] = repository
            }
            if let project = gitlabProject {
                issuer = issuer ?? TrustCommand.gitlabIssuer
                patterns["project_path"] = project
            }
            for condition in conditions {
                let parts = condition.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else {
                    throw CLIError(message: "--condition \(condition) is not claim=pattern", exitCode: 2)
                }
                patterns[String(parts[0])] = String(parts[1])
            }
            guard let issuer else {
                throw CLIError(
                    message: "name the issuer: --issuer, --github-repository or --gitlab-project", exitCode: 2)
            }
            guard !scopes.isEmpty else { throw CLIError(message: "give at least one --scope", exitCode: 2) }
            let body = TrustPolicyCreateRequest(
                name: name, issuer: issuer, audience: audience, conditions: patterns, scopes: scopes,
                maxLifetimeSeconds: maxLifetime, label: label)
            let client = try options.client()
            let policy = try await client.send(
                "POST", TrustCommand.path(client, try await actingOrg(client)), body: body, as: TrustPolicyInfo.self)
            if options.printer.structured(policy) { return }
            TrustCommand.show(policy, printer: options.printer)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one trust policy.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Policy id.") var id: String

        func run() async throws {
            let client = try options.client()
            let policy = try await client.send(
                "GET", TrustCommand.path(client, try await actingOrg(client), "/\(client.escape(id))"),
                as: TrustPolicyInfo.self)
            if options.printer.structured(policy) { return }
            TrustCommand.show(policy, printer: options.printer)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a trust policy; the live tokens it issued are revoked with it.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Policy id.") var id: String

        func run() async throws {
            let client = try options.client()
            let reply = try await client.send(
                "DELETE", TrustCommand.path(client, try await actingOrg(client), "/\(client.escape(id))"),
                as: TrustPolicyDeleted.self)
            if options.printer.structured(reply) { return }
            print("Trust policy deleted; \(reply.revokedTokens) live token(s) revoked.")
        }
    }
}

/// `tessera token exchange`: what a CI step runs to trade its OIDC token for an organization
/// token (RFC 8693). Needs no stored credential: the OIDC token is the credential.
struct ExchangeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exchange",
        abstract: "Exchange a CI system's OIDC token for a short-lived organization token; prints the token.",
        discussion: """
            In GitHub Actions (permissions: id-token: write):
              TESSERA_TOKEN=$(tessera token exchange --endpoint https://tessera.example.com --org acme --github-actions)
            Elsewhere, with the OIDC token in a file (GitLab CI: an id_tokens variable written to a file):
              tessera token exchange --endpoint https://tessera.example.com --org acme --subject-token-file token.jwt
            """)

    @Option(help: "Tessera URL (default: $TESSERA_ENDPOINT, then the login file).") var endpoint: String?
    @Option(help: "The organization (its slug) whose trust policy applies.") var org: String
    @Option(name: .customLong("subject-token-file"), help: "A file holding the OIDC token (- for standard input).")
    var subjectTokenFile: String?
    @Flag(
        name: .customLong("github-actions"),
        help: "Request the OIDC token from GitHub Actions (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN).")
    var githubActions = false
    @Option(help: "The audience to request from GitHub Actions (default: the Tessera URL).") var audience: String?
    @Option(name: .customLong("scope"), help: "Ask for fewer scopes than the policy grants (repeatable).")
    var scopes: [String] = []
    @Option(name: [.short, .customLong("output")], help: "Output: token (default), json or yaml.")
    var output: String = "token"

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard
            let endpoint = endpoint ?? environment["TESSERA_ENDPOINT"].nonEmpty
                ?? (try? ClientConfigFile.load())?.endpoint
        else {
            throw CLIError(message: "no server: pass --endpoint, or set TESSERA_ENDPOINT", exitCode: 2)
        }
        let client = try APIClient(endpoint: endpoint, apiKey: "", org: nil)
        let subjectToken: String
        switch (subjectTokenFile, githubActions) {
        case (let file?, false): subjectToken = try Self.read(file)
        case (nil, true):
            subjectToken = try await Self.githubActionsToken(audience: audience ?? client.endpoint.absoluteString)
        default:
            throw CLIError(message: "give one of --subject-token-file and --github-actions", exitCode: 2)
        }
        var fields = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"), ("subject_token", subjectToken),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"), ("audience", org),
        ]
        if !scopes.isEmpty { fields.append(("scope", scopes.joined(separator: " "))) }
        let reply = try await client.postForm("/oauth/token", fields, as: TokenExchangeResponse.self)
        switch output {
        case "token": print(reply.accessToken)
        case "json": _ = Printer(format: .json).structured(reply)
        case "yaml": _ = Printer(format: .yaml).structured(reply)
        default: throw CLIError(message: "--output must be token, json or yaml", exitCode: 2)
        }
    }

    static func read(_ file: String) throws -> String {
        let data =
            file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: file)
        guard let data, let text = String(data: data, encoding: .utf8) else {
            throw CLIError(message: "cannot read the subject token from \(file)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw CLIError(message: "\(file) is empty") }
        return token
    }

    /// GitHub Actions' OIDC token for `audience`: GET `$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…`
    /// with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered `{"value": …}`.
    static func githubActionsToken(audience: String) async throws -> String {
        let environment = ProcessInfo.processInfo.environment
        guard let base = environment["ACTIONS_ID_TOKEN_REQUEST_URL"].nonEmpty,
            let bearer = environment["ACTIONS_ID_TOKEN_REQUEST_TOKEN"].nonEmpty,
            var components = URLComponents(string: base)
        else {
            throw CLIError(
                message:
                    "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: give the job `permissions: id-token: write`"
            )
        }
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "audience", value: audience)]
        guard let url = components.url else { throw CLIError(message: "ACTIONS_ID_TOKEN_REQUEST_URL is not a URL") }
        var request = URLRequest(url: url)
        request.setValue("bearer \(bearer)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        request.timeoutInterval = 30
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        struct Reply: Decodable { var value: String }
        guard status == 200, let reply = try? JSONDecoder().decode(Reply.self, from: data) else {
            throw CLIError(message: "GitHub Actions did not give an OIDC token (status \(status))")
        }
        return reply.value
    }
}
