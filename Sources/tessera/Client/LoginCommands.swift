import ArgumentParser
import Foundation
import TesseraAPI
import TesseraCore
import TesseraLocalPostgres
import TesseraPostgres

// `tessera login|whoami`: who the client is, against a running server.

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Check a token (or a JWT) against a server and save both for later commands (mode 0600).")

    @Option(help: "Tessera URL (default: $TESSERA_ENDPOINT or http://127.0.0.1:8080).")
    var endpoint: String?

    @Option(help: "The token; default $TESSERA_API_KEY, else read from standard input.")
    var token: String?

    @Option(help: "Organization slug to act in (JWT users in several orgs, platform admins).")
    var org: String?

    @Flag(help: "Log in through the browser: approve a code in the console, get a new personal token.")
    var web = false

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let endpoint = endpoint ?? environment["TESSERA_ENDPOINT"].nonEmpty ?? "http://127.0.0.1:8080"
        if web {
            let secret = try await Self.browserLogin(endpoint)
            let client = try APIClient(endpoint: endpoint, apiKey: secret, org: org)
            let who = try await Identity.fetch(client)
            try ClientConfigFile(endpoint: endpoint, apiKey: secret, org: org).save()
            FileHandle.standardError.write(
                Data("Logged in to \(endpoint) as \(who.summary); saved to \(ClientConfigFile.path)\n".utf8))
            return
        }
        var secret = token ?? environment["TESSERA_API_KEY"].nonEmpty
        if secret == nil {
            if isatty(STDIN_FILENO) == 1 { FileHandle.standardError.write(Data("Token: ".utf8)) }
            secret = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces)
        }
        guard let secret, !secret.isEmpty else {
            throw CLIError(message: "no token given: pass --token, set TESSERA_API_KEY or pipe it in", exitCode: 2)
        }
        let client = try APIClient(endpoint: endpoint, apiKey: secret, org: org)
        let who = try await Identity.fetch(client)
        try ClientConfigFile(endpoint: endpoint, apiKey: secret, org: org).save()
        FileHandle.standardError.write(
            Data("Logged in to \(endpoint) as \(who.summary); saved to \(ClientConfigFile.path)\n".utf8))
    }
}

extension LoginCommand {
    /// The browser flow (as `gh auth login --web`): a code from the server, the approval page opened
    /// (or printed), then a poll once a second for up to ten minutes until the token arrives.
    static func browserLogin(_ endpoint: String) async throws -> String {
        let anonymous = try APIClient(endpoint: endpoint, apiKey: "", org: nil)
        let code = try await anonymous.send("GET", "/api/v1/auth/code", as: LoginCode.self).code
        let page = anonymous.endpoint.absoluteString + "/api_tokens?code=" + code
        FileHandle.standardError.write(
            Data("Open \(page)\nand approve the code \(code) (waiting up to 10 minutes; Ctrl-C to stop)\n".utf8))
        let environment = ProcessInfo.processInfo.environment
        if environment["DISPLAY"] != nil || environment["WAYLAND_DISPLAY"] != nil,
            FileManager.default.isExecutableFile(atPath: "/usr/bin/xdg-open")
        {
            _ = try? Subprocess.detach("/usr/bin/xdg-open", [page])
        }
        let deadline = Date().addingTimeInterval(600)
        while Date() < deadline {
            try await Task.sleep(for: .seconds(1))
            do {
                return try await anonymous.send(
                    "GET", "/api/v1/auth/token", query: [("code", code)], as: LoginIssued.self
                ).token
            } catch let error as CLIError where error.message.hasPrefix("404 ") || error.message.hasPrefix("429 ") {
                continue  // not approved yet
            }
        }
        throw CLIError(message: "the code \(code) was not approved within 10 minutes")
    }
}

/// Who the credential is: a token's metadata, or (for a JWT) the orgs the user belongs to.
struct Identity {
    var token: TokenInfo?
    var organizations: [OrganizationInfo]

    static func fetch(_ client: APIClient) async throws -> Identity {
        if client.apiKey.hasPrefix("tsp_") || client.apiKey.hasPrefix("tso_") {
            return Identity(
                token: try await client.send("GET", client.tokens("/self"), as: TokenInfo.self), organizations: [])
        }
        let orgs = try await client.send("GET", "/orgs", as: OrganizationList.self)
        return Identity(token: nil, organizations: orgs.organizations)
    }

    var summary: String {
        if let token {
            return "\(token.username) in \(token.organization) (\(token.kind) token \(token.tokenPrefix))"
        }
        return "a JWT user in "
            + organizations.map(\.slug).joined(separator: ", ").nonEmptyOr("no organization")
    }
}

extension String {
    func nonEmptyOr(_ fallback: String) -> String { isEmpty ? fallback : self }
}

struct WhoamiCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whoami", abstract: "Show who the saved credential is.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let client = try options.client()
        let who = try await Identity.fetch(client)
        let printer = options.printer
        if let token = who.token {
            if printer.structured(token) { return }
            printer.fields([
                ("Endpoint", client.endpoint.absoluteString), ("Username", token.username),
                ("Organization", token.organization), ("Kind", token.kind),
                ("Token", "\(token.name) (\(token.tokenPrefix), \(token.tokenUUID))"),
                ("Scopes", Printer.text(token.scopes)), ("Expires", Printer.date(token.tokenExpiration)),
                ("State", printer.state(of: token)),
            ])
        } else {
            if printer.structured(["organizations": who.organizations]) { return }
            printer.fields([("Endpoint", client.endpoint.absoluteString), ("Credential", who.summary)])
        }
    }
}

/// Asks on a terminal; without one, `--yes` is required (exit 2).
func confirm(_ yes: Bool, _ question: String) throws {
    if yes { return }
    guard isatty(STDIN_FILENO) == 1 else {
        throw CLIError(message: "refusing without --yes (standard input is not a terminal)", exitCode: 2)
    }
    FileHandle.standardError.write(Data("\(question) [y/N] ".utf8))
    guard let answer = readLine()?.lowercased(), answer == "y" || answer == "yes" else {
        throw CLIError(message: "cancelled", exitCode: 1)
    }
}
