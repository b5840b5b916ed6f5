import ArgumentParser
import Foundation
import TesseraCore
import TesseraLocalPostgres
import TesseraPostgres

// `tessera login|whoami|token|member|org|audit`: client commands that talk to a running server.

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
        let answer = try await anonymous.send("GET", "/api/v1/auth/code") as? [String: Any]
        guard let code = answer?["code"] as? String else { throw CLIError(message: "the server gave no login code") }
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
                let issued =
                    try await anonymous.send("GET", "/api/v1/auth/token", query: [("code", code)]) as? [String: Any]
                if let token = issued?["token"] as? String { return token }
            } catch let error as CLIError where error.message.hasPrefix("404 ") || error.message.hasPrefix("429 ") {
                continue  // not approved yet
            }
        }
        throw CLIError(message: "the code \(code) was not approved within 10 minutes")
    }
}

/// Who the credential is: a token's metadata, or (for a JWT) the orgs the user belongs to.
struct Identity {
    var token: [String: Any]?
    var organizations: [[String: Any]]

    static func fetch(_ client: APIClient) async throws -> Identity {
        if client.apiKey.hasPrefix("tsp_") || client.apiKey.hasPrefix("tso_") {
            let token = try await client.send("GET", client.tokens("/self")) as? [String: Any] ?? [:]
            return Identity(token: token, organizations: [])
        }
        let orgs = try await client.send("GET", "/orgs") as? [String: Any]
        return Identity(token: nil, organizations: orgs?["organizations"] as? [[String: Any]] ?? [])
    }

    var summary: String {
        if let token {
            return "\(token["username"] as? String ?? "?") in \(token["organization"] as? String ?? "?") "
                + "(\(token["kind"] as? String ?? "?") token \(token["tokenPrefix"] as? String ?? ""))"
        }
        return "a JWT user in "
            + (organizations.compactMap { $0["slug"] as? String }.joined(separator: ", ").nonEmptyOr("no organization"))
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
                ("Endpoint", client.endpoint.absoluteString), ("Username", Printer.text(token["username"])),
                ("Organization", Printer.text(token["organization"])), ("Kind", Printer.text(token["kind"])),
                (
                    "Token",
                    "\(Printer.text(token["name"])) (\(Printer.text(token["tokenPrefix"])), \(Printer.text(token["tokenUUID"])))"
                ),
                ("Scopes", Printer.text(token["scopes"])), ("Expires", Printer.date(token["tokenExpiration"])),
                ("State", printer.state(of: token)),
            ])
        } else {
            if printer.structured(["organizations": who.organizations]) { return }
            printer.fields([("Endpoint", client.endpoint.absoluteString), ("Credential", who.summary)])
        }
    }
}

// MARK: - token

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "List, create, inspect, update, rotate and delete API tokens.",
        subcommands: [List.self, Create.self, Get.self, Update.self, Rotate.self, Delete.self])

    static let columns = ["ID", "NAME", "KIND", "USERNAME", "STATE", "SCOPES", "EXPIRES", "LAST USED", "CREATED BY"]

    static func row(_ token: [String: Any], _ printer: Printer) -> [String] {
        [
            Printer.text(token["tokenUUID"]), Printer.text(token["name"]), Printer.text(token["kind"]),
            Printer.text(token["username"]), printer.state(of: token), Printer.text(token["scopes"]),
            Printer.date(token["tokenExpiration"]), Printer.date(token["lastUsedDate"]),
            Printer.text(token["createdBy"]),
        ]
    }

    static func show(_ token: [String: Any], _ printer: Printer) {
        if printer.structured(token) { return }
        printer.fields([
            ("ID", Printer.text(token["tokenUUID"])), ("Name", Printer.text(token["name"])),
            ("Description", Printer.text(token["description"])), ("Kind", Printer.text(token["kind"])),
            ("Username", Printer.text(token["username"])), ("Organization", Printer.text(token["organization"])),
            ("Prefix", Printer.text(token["tokenPrefix"])), ("State", printer.state(of: token)),
            ("Scopes", Printer.text(token["scopes"])), ("Groups", Printer.text(token["groups"])),
            ("Expires", Printer.date(token["tokenExpiration"])), ("Last used", Printer.date(token["lastUsedDate"])),
            ("Created", Printer.date(token["createdDate"])), ("Created by", Printer.text(token["createdBy"])),
        ])
    }

    /// Prints a new secret: only the token with `-q`, the whole object as JSON/YAML, else a box.
    static func reveal(_ created: [String: Any], quiet: Bool, _ printer: Printer, verb: String) {
        let token = created["token"] as? String ?? ""
        if quiet {
            printer.write(token)
            return
        }
        if printer.structured(created) { return }
        let kind = created["kind"] as? String == "organization" ? "organization" : "personal"
        printer.secretBox(
            token,
            title:
                "\(verb) \(kind) token \"\(Printer.text(created["name"]))\" (\(Printer.text(created["tokenUUID"]))), "
                + "expires \(Printer.date(created["tokenExpiration"]))")
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the tokens you can see (admins: all of the org's).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Substring of name, username, createdBy or groups.") var search: String?
        @Option(help: "personal or organization.") var kind: String?
        @Option(help: "active, inactive or revoked.") var status: String?
        @Option(help: "Page size, 1-1000.") var limit: Int = 100
        @Flag(help: "Follow every page.") var all = false

        func run() async throws {
            let client = try options.client()
            let (tokens, cursor) = try await client.pages(
                client.tokens(), items: "tokens", all: all,
                query: [("search", search), ("kind", kind), ("status", status), ("limit", String(limit))])
            let printer = options.printer
            if printer.structured(["tokens": tokens, "nextCursor": cursor ?? NSNull()] as [String: Any]) { return }
            printer.table(TokenCommand.columns, tokens.map { TokenCommand.row($0, printer) })
            if let cursor, !all {
                FileHandle.standardError.write(Data("more: --all, or the API with cursor=\(cursor)\n".utf8))
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Create a token: your own personal token, a member's (--for), or an organization token (--org-token).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Token name.") var name: String
        @Option(name: [.short, .customLong("description")], help: "Description.") var description: String?
        @Option(name: [.short, .customLong("scope")], help: "A scope (repeatable; default: the org's default scopes).")
        var scopes: [String] = []
        @Option(help: "Lifetime: 30d, 1w, 24h, a date 2026-12-31, a date-time, or never (default: the org's).")
        var expires: String?
        @Flag(help: "An organization token (admins), labelled with --label.") var orgToken = false
        @Option(help: "The organization token's service label (with --org-token).") var label: String?
        @Option(name: .customLong("for"), help: "Create a member's personal token (admins).") var forUser: String?
        @Flag(name: [.short, .customLong("quiet")], help: "Print only the token (for scripts).") var quiet = false

        func validate() throws {
            if orgToken && label == nil {
                throw ValidationError("--org-token needs --label NAME (the token's service label)")
            }
            if !orgToken && label != nil { throw ValidationError("--label goes with --org-token") }
            if orgToken && forUser != nil { throw ValidationError("--org-token and --for cannot be combined") }
        }

        func run() async throws {
            var body: [String: Any] = ["name": name]
            if let description { body["description"] = description }
            if !scopes.isEmpty { body["scopes"] = scopes }
            if let expires {
                do {
                    switch try ExpirySpec.parse(expires, now: Date()) {
                    case .never: body["tokenExpiration"] = NSNull()
                    case .at(let date): body["tokenExpiration"] = Int64(date.timeIntervalSince1970)
                    }
                } catch {
                    throw CLIError(message: error.description, exitCode: 2)
                }
            }
            let client = try options.client()
            let path: String
            if orgToken, let label {
                body["isSystemToken"] = true
                path = client.tokens("/" + client.escape(label))
            } else if let forUser {
                path = client.tokens("/" + client.escape(forUser))
            } else {
                path = client.tokens()
            }
            let created = try await client.send("POST", path, body: body) as? [String: Any] ?? [:]
            TokenCommand.reveal(created, quiet: quiet, options.printer, verb: "Created")
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one token.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Token id (tokenUUID), or `self`.") var id: String

        func run() async throws {
            let client = try options.client()
            let token = try await client.send("GET", client.tokens("/" + client.escape(id))) as? [String: Any] ?? [:]
            TokenCommand.show(token, options.printer)
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rename, describe, activate or deactivate a token.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Token id.") var id: String
        @Option(help: "New name.") var name: String?
        @Option(name: [.short, .customLong("description")], help: "New description (\"\" clears it).") var description:
            String?
        @Flag(help: "Make an inactive token work again.") var activate = false
        @Flag(help: "Stop the token until it is activated again.") var deactivate = false

        func validate() throws {
            if activate && deactivate { throw ValidationError("--activate and --deactivate cannot be combined") }
            if name == nil && description == nil && !activate && !deactivate {
                throw ValidationError("nothing to change: give --name, --description, --activate or --deactivate")
            }
        }

        func run() async throws {
            var body: [String: Any] = [:]
            if let name { body["name"] = name }
            if let description { body["description"] = description.isEmpty ? NSNull() : description }
            if activate { body["status"] = "active" }
            if deactivate { body["status"] = "inactive" }
            let client = try options.client()
            let token =
                try await client.send("PATCH", client.tokens("/" + client.escape(id)), body: body) as? [String: Any]
                ?? [:]
            TokenCommand.show(token, options.printer)
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "New secret, same metadata; the old one stops now, or after --overlap.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Token id.") var id: String
        @Option(help: "Keep the old secret working this long (e.g. 1h, 30m, 3600s; at most 24h).") var overlap: String?
        @Flag(name: [.short, .customLong("quiet")], help: "Print only the new token.") var quiet = false

        func run() async throws {
            var body: [String: Any] = [:]
            if let overlap {
                guard let seconds = Self.seconds(overlap), seconds >= 0, seconds <= 86_400 else {
                    throw CLIError(
                        message: "--overlap \(overlap): use a duration such as 30m, 1h or 3600s, at most 24h",
                        exitCode: 2)
                }
                body["overlapSeconds"] = seconds
            }
            let client = try options.client()
            let created =
                try await client.send("POST", client.tokens("/\(client.escape(id))/rotate"), body: body)
                as? [String: Any] ?? [:]
            TokenCommand.reveal(created, quiet: quiet, options.printer, verb: "Rotated")
        }

        static func seconds(_ text: String) -> Int? {
            let units = ["s": 1, "m": 60, "h": 3600]
            guard let unit = text.last.map(String.init), let factor = units[unit], let count = Int(text.dropLast())
            else {
                return Int(text)
            }
            return count * factor
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a token (it stops working at once).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Token id.") var id: String
        @Flag(name: [.short, .customLong("yes")], help: "Do not ask.") var yes = false

        func run() async throws {
            try confirm(yes, "Delete token \(id)? It stops working at once.")
            let client = try options.client()
            try await client.send("DELETE", client.tokens("/" + client.escape(id)))
            FileHandle.standardError.write(Data("Deleted token \(id)\n".utf8))
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

// MARK: - member, org, audit

/// The org slug to act in: --org/TESSERA_ORG/login file, else the calling token's own.
func actingOrg(_ client: APIClient) async throws -> String {
    if let org = client.org { return org }
    let who = try await Identity.fetch(client)
    if let slug = who.token?["organization"] as? String { return slug }
    if who.organizations.count == 1, let slug = who.organizations[0]["slug"] as? String { return slug }
    throw CLIError(message: "which organization? pass --org SLUG or set TESSERA_ORG", exitCode: 2)
}

struct MemberCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "member", abstract: "List, add or remove organization members.",
        subcommands: [List.self, Add.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List members.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let client = try options.client()
            let org = try await actingOrg(client)
            let reply = try await client.send("GET", "/orgs/\(client.escape(org))/members") as? [String: Any] ?? [:]
            let printer = options.printer
            if printer.structured(reply) { return }
            let members = reply["members"] as? [[String: Any]] ?? []
            printer.table(
                ["USERNAME", "ROLE", "GROUPS", "STATUS", "SINCE"],
                members.map {
                    [
                        Printer.text($0["username"]), Printer.text($0["role"]), Printer.text($0["groups"]),
                        Printer.text($0["status"]), Printer.date($0["createdDate"]),
                    ]
                })
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a member, or change their role and groups (admins).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Username.") var username: String
        @Option(help: "admin or member.") var role: String?
        @Option(name: .customLong("group"), help: "A group (repeatable; replaces the member's groups).") var groups:
            [String] = []

        func run() async throws {
            var body: [String: Any] = [:]
            if let role { body["role"] = role }
            if !groups.isEmpty { body["groups"] = groups }
            let client = try options.client()
            let org = try await actingOrg(client)
            let member =
                try await client.send(
                    "PUT", "/orgs/\(client.escape(org))/members/\(client.escape(username))", body: body)
                as? [String: Any] ?? [:]
            let printer = options.printer
            if printer.structured(member) { return }
            printer.fields([
                ("Username", Printer.text(member["username"])), ("Role", Printer.text(member["role"])),
                ("Groups", Printer.text(member["groups"])), ("Organization", org),
            ])
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a member (or leave, with your own name); their personal tokens in the org are revoked.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Username.") var username: String
        @Flag(name: [.short, .customLong("yes")], help: "Do not ask.") var yes = false

        func run() async throws {
            try confirm(yes, "Remove \(username)? Their personal tokens in the organization are revoked.")
            let client = try options.client()
            let org = try await actingOrg(client)
            try await client.send("DELETE", "/orgs/\(client.escape(org))/members/\(client.escape(username))")
            FileHandle.standardError.write(Data("Removed \(username) from \(org)\n".utf8))
        }
    }
}

struct OrgCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "org", abstract: "Show an organization or change its token policy.",
        subcommands: [Show.self, SetPolicy.self])

    static func show(_ org: [String: Any], _ printer: Printer) {
        if printer.structured(org) { return }
        func days(_ value: Any?) -> String { (value as? Int).map { "\($0) days" } ?? "none" }
        printer.fields([
            ("Slug", Printer.text(org["slug"])), ("Name", Printer.text(org["displayName"])),
            ("Default lifetime", days(org["defaultTokenLifetimeDays"])),
            ("Max lifetime", days(org["maxTokenLifetimeDays"])),
            ("Personal tokens per member", Printer.text(org["personalTokenLimit"])),
            ("Non-expiring allowed", Printer.text(org["allowNonExpiringTokens"])),
            ("Idle timeout", days(org["idleTimeoutDays"])), ("API group", Printer.text(org["apiGroup"])),
            ("User tokens", Printer.text(org["userTokensEnabled"])),
            ("Default scopes", Printer.text(org["defaultScopes"])),
            (
                "Scopes",
                ((org["scopes"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String }.joined(separator: ",")
            ),
        ])
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the organization and its policy.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let client = try options.client()
            let org = try await actingOrg(client)
            OrgCommand.show(
                try await client.send("GET", "/orgs/\(client.escape(org))") as? [String: Any] ?? [:], options.printer)
        }
    }

    struct SetPolicy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-policy", abstract: "Change the token policy (admins).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Lifetime of a token created without an expiration.") var defaultLifetimeDays: Int?
        @Option(help: "Longest lifetime allowed, or `none`.") var maxLifetimeDays: String?
        @Option(help: "Allow non-expiring tokens: true or false.") var allowNonExpiring: Bool?
        @Option(help: "Tokens unused this many days stop working, or `none`.") var idleTimeoutDays: String?
        @Option(help: "Only members of this group may create their own token, or `none`.") var apiGroup: String?
        @Option(help: "Members may create their own tokens: true or false.") var userTokens: Bool?
        @Option(help: "Live personal tokens each member may hold (1 to 1000; 1 is LISA's rule).")
        var personalTokenLimit: Int?

        func run() async throws {
            var body: [String: Any] = [:]
            if let defaultLifetimeDays { body["defaultTokenLifetimeDays"] = defaultLifetimeDays }
            if let maxLifetimeDays {
                body["maxTokenLifetimeDays"] = try Self.daysOrNone(maxLifetimeDays, "--max-lifetime-days")
            }
            if let allowNonExpiring { body["allowNonExpiringTokens"] = allowNonExpiring }
            if let idleTimeoutDays {
                body["idleTimeoutDays"] = try Self.daysOrNone(idleTimeoutDays, "--idle-timeout-days")
            }
            if let apiGroup { body["apiGroup"] = apiGroup == "none" ? NSNull() : apiGroup }
            if let userTokens { body["userTokensEnabled"] = userTokens }
            if let personalTokenLimit { body["personalTokenLimit"] = personalTokenLimit }
            guard !body.isEmpty else {
                throw CLIError(message: "nothing to change: see `tessera org set-policy --help`", exitCode: 2)
            }
            let client = try options.client()
            let org = try await actingOrg(client)
            OrgCommand.show(
                try await client.send("PATCH", "/orgs/\(client.escape(org))", body: body) as? [String: Any] ?? [:],
                options.printer)
        }

        static func daysOrNone(_ text: String, _ flag: String) throws -> Any {
            if text == "none" { return NSNull() }
            guard let days = Int(text), days > 0 else {
                throw CLIError(message: "\(flag) \(text): a number of days, or none", exitCode: 2)
            }
            return days
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Read the organization's audit trail (admins).", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Audit events, newest first.")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only this actor.") var actor: String?
        @Option(help: "Only this action, e.g. token.revoked.") var action: String?
        @Option(help: "Only events about this token id.") var token: String?
        @Option(help: "Since (epoch seconds).") var since: Int?
        @Option(help: "Until (epoch seconds).") var until: Int?
        @Option(help: "Page size.") var limit: Int = 100
        @Flag(help: "Follow every page.") var all = false

        func run() async throws {
            let client = try options.client()
            let org = try await actingOrg(client)
            let (events, cursor) = try await client.pages(
                "/orgs/\(client.escape(org))/audit-events", items: "events", all: all,
                query: [
                    ("actor", actor), ("action", action), ("token", token), ("since", since.map(String.init)),
                    ("until", until.map(String.init)), ("limit", String(limit)),
                ])
            let printer = options.printer
            if printer.structured(["events": events, "nextCursor": cursor ?? NSNull()] as [String: Any]) { return }
            printer.table(
                ["WHEN", "ACTOR", "ACTION", "TOKEN", "USERNAME", "DETAILS"],
                events.map { event in
                    let details = (event["details"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
                        .map { "\($0.key)=\(Printer.text($0.value))" }.joined(separator: " ")
                    return [
                        Printer.date(event["occurredDate"]), Printer.text(event["actor"]),
                        Printer.text(event["action"]),
                        Printer.text(event["tokenUUID"]), Printer.text(event["username"]),
                        details.isEmpty ? "-" : details,
                    ]
                })
        }
    }
}
