import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraServices

/// `tessera admin …`: operator commands on the database itself (`DATABASE_URL`), for when there
/// is no admin token at hand. They call the same transactional operations as the HTTP API, so
/// cascades and audit events (actor kind `cli`) are identical.
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Operator commands on the database (DATABASE_URL): orgs, users, members.",
        subcommands: [Org.self, User.self, Member.self])

    struct Org: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or list organizations.", subcommands: [Create.self, List.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create an organization (no members yet; see `admin member add`).")
            @OptionGroup var database: DatabaseOptions
            @Argument(help: "Slug: [a-z0-9][a-z0-9-]{1,62}.") var slug: String
            @Option(help: "Display name (default: the slug).") var name: String?

            func run() async throws {
                guard Validation.isValidSlug(slug) else {
                    throw CLIError(message: "organization slug \(slug) must match [a-z0-9][a-z0-9-]{1,62}", exitCode: 2)
                }
                try await withStore(database) { store in
                    let org = try await OrganizationService(store: store).create(
                        slug: slug, displayName: name, by: .cli())
                    print("Created organization \(org.slug) (\(org.id.uuidString.lowercased()))")
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List organizations.")
            @OptionGroup var database: DatabaseOptions
            @Option(name: [.short, .customLong("output")], help: "table, json or yaml.") var output: OutputFormat =
                .table

            func run() async throws {
                try await withStore(database) { store in
                    let orgs = try await OrganizationService(store: store).all(logger: store.logger)
                    let printer = Printer(format: output)
                    struct Summary: Encodable {
                        let slug: String
                        let displayName: String
                        let createdDate: Int64
                    }
                    let summaries = orgs.map {
                        Summary(
                            slug: $0.slug, displayName: $0.displayName,
                            createdDate: Int64($0.createdAt.timeIntervalSince1970))
                    }
                    if printer.structured(["organizations": summaries]) { return }
                    printer.table(
                        ["SLUG", "NAME", "CREATED"],
                        summaries.map { [$0.slug, $0.displayName, Printer.date($0.createdDate)] })
                }
            }
        }
    }

    struct User: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable, enable or delete a user (their personal tokens are revoked everywhere).",
            subcommands: [Disable.self, Enable.self, Delete.self])

        struct Disable: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Disable a user: their personal tokens are revoked in every org.")
            @OptionGroup var database: DatabaseOptions
            @Argument(help: "Username.") var username: String

            func run() async throws {
                try await withStore(database) { store in
                    let user = try await requireUser(store, username)
                    try await UserService(store: store).update(user, status: .disabled, platformAdmin: nil, by: .cli())
                    print("Disabled \(username)")
                }
            }
        }

        struct Enable: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Enable a disabled user (revoked tokens stay revoked).")
            @OptionGroup var database: DatabaseOptions
            @Argument(help: "Username.") var username: String

            func run() async throws {
                try await withStore(database) { store in
                    let user = try await requireUser(store, username)
                    try await UserService(store: store).update(user, status: .active, platformAdmin: nil, by: .cli())
                    print("Enabled \(username)")
                }
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Delete a user: personal tokens revoked, memberships removed.")
            @OptionGroup var database: DatabaseOptions
            @Argument(help: "Username.") var username: String
            @Flag(name: [.short, .customLong("yes")], help: "Do not ask.") var yes = false

            func run() async throws {
                try confirm(yes, "Delete user \(username)? Their personal tokens are revoked everywhere.")
                try await withStore(database) { store in
                    let user = try await requireUser(store, username)
                    try await UserService(store: store).delete(user, by: .cli())
                    print("Deleted \(username)")
                }
            }
        }
    }

    struct Member: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add or remove organization members.", subcommands: [Add.self, Remove.self])

        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Add a member (creating the user), or change role and groups.")
            @OptionGroup var database: DatabaseOptions
            @Argument(help: "Organization slug.") var org: String
            @Argument(help: "Username.") var username: String
            @Option(help: "admin or member (default: member, or unchanged).") var role: MembershipRole?
            @Option(name: .customLong("group"), help: "A group (repeatable; replaces the member's groups).") var groups:
                [String] = []

            func run() async throws {
                guard Validation.isValidUsername(username) else {
                    throw CLIError(message: "username \(username) is invalid", exitCode: 2)
                }
                try await withStore(database) { store in
                    let organization = try await requireOrg(store, org)
                    let (member, added) = try await MemberService(store: store).put(
                        orgID: organization.id, username: username, role: role, groups: groups.isEmpty ? nil : groups,
                        by: .cli())
                    print("\(added ? "Added" : "Updated") \(member.username) in \(org) as \(member.role.rawValue)")
                }
            }
        }

        struct Remove: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Remove a member; their personal tokens in the org are revoked.")
            @OptionGroup var database: DatabaseOptions
            @Argument(help: "Organization slug.") var org: String
            @Argument(help: "Username.") var username: String

            func run() async throws {
                try await withStore(database) { store in
                    let organization = try await requireOrg(store, org)
                    try await MemberService(store: store).remove(
                        org: organization, username: username, leaving: false, by: .cli())
                    print("Removed \(username) from \(org)")
                }
            }
        }
    }
}

extension MembershipRole: ExpressibleByArgument {}

private func withStore(_ database: DatabaseOptions, _ body: @escaping @Sendable (TesseraStore) async throws -> Void)
    async throws
{
    var adminLogger = Logger(label: "tessera.admin")
    adminLogger.logLevel = Tessera.logLevel
    let logger = adminLogger
    let url = try database.resolvedURL()
    let migrator = try loadMigrator(nil)
    try await withDatabase(url, logger: logger) { client in
        try await ensureMigrated(migrator, migrate: false, client: client, logger: logger)
        do {
            try await body(TesseraStore(client: client, logger: logger))
        } catch let error as DomainError {
            throw CLIError(message: error.message)
        }
    }
}

private func requireUser(_ store: TesseraStore, _ username: String) async throws -> UserRecord {
    guard let user = try await UserService(store: store).user(named: username) else {
        throw CLIError(message: "no user \(username)")
    }
    return user
}

private func requireOrg(_ store: TesseraStore, _ slug: String) async throws -> OrganizationRecord {
    guard let org = try await OrganizationService(store: store).organization(slug: slug) else {
        throw CLIError(message: "no organization \(slug)")
    }
    return org
}
