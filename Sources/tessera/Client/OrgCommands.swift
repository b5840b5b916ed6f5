import ArgumentParser
import Foundation
import TesseraAPI

/// The org slug to act in: --org/TESSERA_ORG/login file, else the calling token's own.
func actingOrg(_ client: APIClient) async throws -> String {
    if let org = client.org { return org }
    let who = try await Identity.fetch(client)
    if let token = who.token { return token.organization }
    if who.organizations.count == 1 { return who.organizations[0].slug }
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
            let reply = try await client.send("GET", "/orgs/\(client.escape(org))/members", as: MemberList.self)
            let printer = options.printer
            if printer.structured(reply) { return }
            printer.table(
                ["USERNAME", "ROLE", "GROUPS", "STATUS", "SINCE"],
                reply.members.map {
                    [$0.username, $0.role, Printer.text($0.groups), $0.status, Printer.date($0.createdDate)]
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
            let body = MemberRequest(role: role, groups: groups.isEmpty ? nil : groups)
            let client = try options.client()
            let org = try await actingOrg(client)
            let member = try await client.send(
                "PUT", "/orgs/\(client.escape(org))/members/\(client.escape(username))", body: body,
                as: MemberInfo.self)
            let printer = options.printer
            if printer.structured(member) { return }
            printer.fields([
                ("Username", member.username), ("Role", member.role), ("Groups", Printer.text(member.groups)),
                ("Organization", org),
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

    static func show(_ org: OrganizationInfo, _ printer: Printer) {
        if printer.structured(org) { return }
        func days(_ value: Int?) -> String { value.map { "\($0) days" } ?? "none" }
        printer.fields([
            ("Slug", org.slug), ("Name", org.displayName), ("Default lifetime", days(org.defaultTokenLifetimeDays)),
            ("Max lifetime", days(org.maxTokenLifetimeDays)),
            ("Personal tokens per member", String(org.personalTokenLimit)),
            ("Non-expiring allowed", Printer.text(org.allowNonExpiringTokens)),
            ("Idle timeout", days(org.idleTimeoutDays)), ("API group", Printer.text(org.apiGroup)),
            ("Admin group", Printer.text(org.adminGroup)), ("User group", Printer.text(org.userGroup)),
            ("User tokens", Printer.text(org.userTokensEnabled)), ("Default scopes", Printer.text(org.defaultScopes)),
            ("Scopes", org.scopes.map(\.name).joined(separator: ",")),
        ])
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the organization and its policy.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let client = try options.client()
            let org = try await actingOrg(client)
            OrgCommand.show(
                try await client.send("GET", "/orgs/\(client.escape(org))", as: OrganizationInfo.self), options.printer)
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
        @Option(help: "Members of this IdP group are admins, the others members; or `none`.") var adminGroup: String?
        @Option(help: "Members in neither this group nor the admin group are suspended; or `none`.")
        var userGroup: String?
        @Option(help: "Members may create their own tokens: true or false.") var userTokens: Bool?
        @Option(help: "Live personal tokens each member may hold (1 to 1000; 1 is LISA's rule).")
        var personalTokenLimit: Int?

        func run() async throws {
            var body = OrganizationPatchRequest()
            body.defaultTokenLifetimeDays = defaultLifetimeDays
            if let maxLifetimeDays {
                body.maxTokenLifetimeDays = try Self.daysOrNone(maxLifetimeDays, "--max-lifetime-days")
            }
            body.allowNonExpiringTokens = allowNonExpiring
            if let idleTimeoutDays {
                body.idleTimeoutDays = try Self.daysOrNone(idleTimeoutDays, "--idle-timeout-days")
            }
            if let apiGroup { body.apiGroup = apiGroup == "none" ? .clear : .set(apiGroup) }
            if let adminGroup { body.adminGroup = adminGroup == "none" ? .clear : .set(adminGroup) }
            if let userGroup { body.userGroup = userGroup == "none" ? .clear : .set(userGroup) }
            body.userTokensEnabled = userTokens
            body.personalTokenLimit = personalTokenLimit
            guard !body.isEmpty else {
                throw CLIError(message: "nothing to change: see `tessera org set-policy --help`", exitCode: 2)
            }
            let client = try options.client()
            let org = try await actingOrg(client)
            OrgCommand.show(
                try await client.send("PATCH", "/orgs/\(client.escape(org))", body: body, as: OrganizationInfo.self),
                options.printer)
        }

        static func daysOrNone(_ text: String, _ flag: String) throws -> Patch<Int> {
            if text == "none" { return .clear }
            guard let days = Int(text), days > 0 else {
                throw CLIError(message: "\(flag) \(text): a number of days, or none", exitCode: 2)
            }
            return .set(days)
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
                "/orgs/\(client.escape(org))/audit-events", AuditPage.self, all: all,
                query: [
                    ("actor", actor), ("action", action), ("token", token), ("since", since.map(String.init)),
                    ("until", until.map(String.init)), ("limit", String(limit)),
                ])
            let printer = options.printer
            if printer.structured(AuditPage(events: events, nextCursor: cursor)) { return }
            printer.table(
                ["WHEN", "ACTOR", "ACTION", "TOKEN", "USERNAME", "DETAILS"],
                events.map { event in
                    let details = event.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                        .joined(separator: " ")
                    return [
                        Printer.date(event.occurredDate), Printer.text(event.actor), event.action,
                        Printer.text(event.tokenUUID), Printer.text(event.username), details.isEmpty ? "-" : details,
                    ]
                })
        }
    }
}
