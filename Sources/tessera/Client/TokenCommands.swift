import ArgumentParser
import Foundation
import TesseraAPI
import TesseraCore

/// `tessera token …`: a member's and an admin's tokens, over the API.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "List, create, inspect, update, rotate and delete API tokens.",
        subcommands: [
            List.self, Create.self, Get.self, Update.self, Rotate.self, Delete.self, UsageCommand.self,
            ExchangeCommand.self,
        ])

    static let columns = ["ID", "NAME", "KIND", "USERNAME", "STATE", "SCOPES", "EXPIRES", "LAST USED", "CREATED BY"]

    static func row(_ token: TokenInfo, _ printer: Printer) -> [String] {
        [
            token.tokenUUID, token.name, token.kind, token.username, printer.state(of: token),
            Printer.text(token.scopes), Printer.date(token.tokenExpiration), Printer.date(token.lastUsedDate),
            token.createdBy,
        ]
    }

    static func show(_ token: TokenInfo, _ printer: Printer) {
        if printer.structured(token) { return }
        printer.fields([
            ("ID", token.tokenUUID), ("Name", token.name), ("Description", Printer.text(token.description)),
            ("Kind", token.kind), ("Username", token.username), ("Organization", token.organization),
            ("Prefix", token.tokenPrefix), ("State", printer.state(of: token)), ("Scopes", Printer.text(token.scopes)),
            ("Groups", Printer.text(token.groups)), ("Expires", Printer.date(token.tokenExpiration)),
            ("Last used", Printer.date(token.lastUsedDate)), ("Created", Printer.date(token.createdDate)),
            ("Created by", token.createdBy),
            (
                "Access rules",
                token.accessRules.isEmpty ? "none" : token.accessRules.map(ruleText).joined(separator: ", ")
            ),
            ("Allowed from", token.allowedCidrs.isEmpty ? "anywhere" : token.allowedCidrs.joined(separator: ", ")),
        ])
    }

    static func ruleText(_ rule: AccessRuleInfo) -> String {
        rule.host.map { "\(rule.method) \(rule.path) (\($0))" } ?? "\(rule.method) \(rule.path)"
    }

    /// Prints a new secret: only the token with `-q`, the whole object as JSON/YAML, else a box.
    static func reveal(_ created: TokenInfo, quiet: Bool, _ printer: Printer, verb: String) {
        let token = created.token ?? ""
        if quiet {
            printer.write(token)
            return
        }
        if printer.structured(created) { return }
        let kind = created.kind == "organization" ? "organization" : "personal"
        printer.secretBox(
            token,
            title: "\(verb) \(kind) token \"\(created.name)\" (\(created.tokenUUID)), "
                + "expires \(Printer.date(created.tokenExpiration))")
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the tokens you can see (admins: all of the org's).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Substring of name, username, createdBy or groups.") var search: String?
        @Option(help: "personal or organization.") var kind: String?
        @Option(help: "active, inactive or revoked.") var status: String?
        @Option(help: "direct (default), federation (exchanged by CI) or all.") var source: String?
        @Option(help: "Page size, 1-1000.") var limit: Int = 100
        @Flag(help: "Follow every page.") var all = false

        func run() async throws {
            let client = try options.client()
            let (tokens, cursor) = try await client.pages(
                client.tokens(), TokenList.self, all: all,
                query: [
                    ("search", search), ("kind", kind), ("status", status), ("source", source),
                    ("limit", String(limit)),
                ])
            let printer = options.printer
            if printer.structured(TokenList(tokens: tokens, nextCursor: cursor)) { return }
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
        @Option(
            name: .customLong("allow"),
            help: "An access rule 'METHOD /path' or 'METHOD /path host' (* one segment, ** any; repeatable).")
        var rules: [String] = []
        @Option(name: .customLong("allow-from"), help: "A CIDR the token may be used from (repeatable).")
        var cidrs: [String] = []

        func validate() throws {
            if orgToken && label == nil {
                throw ValidationError("--org-token needs --label NAME (the token's service label)")
            }
            if !orgToken && label != nil { throw ValidationError("--label goes with --org-token") }
            if orgToken && forUser != nil { throw ValidationError("--org-token and --for cannot be combined") }
        }

        func run() async throws {
            var body = TokenCreateRequest(name: name, description: description, scopes: scopes.isEmpty ? nil : scopes)
            if !rules.isEmpty {
                body.accessRules = try rules.map { text in
                    let parts = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                    guard (2...3).contains(parts.count) else {
                        throw CLIError(
                            message: "--allow \(text) is not 'METHOD /path' or 'METHOD /path host'", exitCode: 2)
                    }
                    return AccessRuleInfo(method: parts[0], path: parts[1], host: parts.count == 3 ? parts[2] : nil)
                }
            }
            if !cidrs.isEmpty { body.allowedCidrs = cidrs }
            if let expires {
                do {
                    switch try ExpirySpec.parse(expires, now: Date()) {
                    case .never: body.neverExpires = true
                    case .at(let date): body.tokenExpiration = Int64(date.timeIntervalSince1970)
                    }
                } catch {
                    throw CLIError(message: error.description, exitCode: 2)
                }
            }
            let client = try options.client()
            let path: String
            if orgToken, let label {
                body.isSystemToken = true
                path = client.tokens("/" + client.escape(label))
            } else if let forUser {
                path = client.tokens("/" + client.escape(forUser))
            } else {
                path = client.tokens()
            }
            let created = try await client.send("POST", path, body: body, as: TokenInfo.self)
            TokenCommand.reveal(created, quiet: quiet, options.printer, verb: "Created")
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one token.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Token id (tokenUUID), or `self`.") var id: String

        func run() async throws {
            let client = try options.client()
            let token = try await client.send("GET", client.tokens("/" + client.escape(id)), as: TokenInfo.self)
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
            var body = TokenUpdateRequest(name: name)
            if let description { body.description = description.isEmpty ? .clear : .set(description) }
            if activate { body.status = "active" }
            if deactivate { body.status = "inactive" }
            let client = try options.client()
            let token = try await client.send(
                "PATCH", client.tokens("/" + client.escape(id)), body: body, as: TokenInfo.self)
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
            var body = TokenRotateRequest()
            if let overlap {
                guard let seconds = Self.seconds(overlap), seconds >= 0, seconds <= 86_400 else {
                    throw CLIError(
                        message: "--overlap \(overlap): use a duration such as 30m, 1h or 3600s, at most 24h",
                        exitCode: 2)
                }
                body.overlapSeconds = seconds
            }
            let client = try options.client()
            let created = try await client.send(
                "POST", client.tokens("/\(client.escape(id))/rotate"), body: body, as: TokenInfo.self)
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

/// `tessera token usage ID`: a token's verifications per day (or hour) by outcome, and its last
/// client addresses (DESIGN §14).
struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "Show a token's verifications by outcome and its last addresses.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Token id (tokenUUID).") var id: String
    @Flag(help: "Per hour over the last 48 hours (default: per day over 30 days).") var hourly = false

    func run() async throws {
        let client = try options.client()
        let usage = try await client.send(
            "GET", client.tokens("/" + client.escape(id) + "/usage"),
            query: [("granularity", hourly ? "hour" : "day")], as: TokenUsage.self)
        let printer = options.printer
        if printer.structured(usage) { return }
        let busy = usage.series.filter {
            $0.valid + $0.insufficientScope + $0.expired + $0.inactive + $0.revoked + $0.address > 0
        }
        printer.table(
            [hourly ? "HOUR" : "DAY", "VALID", "INSUFFICIENT SCOPE", "EXPIRED", "INACTIVE", "REVOKED", "ADDRESS"],
            busy.map {
                [
                    Printer.date($0.start), String($0.valid), String($0.insufficientScope), String($0.expired),
                    String($0.inactive), String($0.revoked), String($0.address),
                ]
            })
        if busy.isEmpty { print("No verification in this period.") }
        for seen in usage.lastAddresses { print("last used from \(seen.address) at \(Printer.date(seen.lastSeen))") }
    }
}
