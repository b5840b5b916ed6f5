import ArgumentParser
import Foundation
import Logging
import TesseraCore
import TesseraPostgres

struct BootstrapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap",
        abstract: "Create an organization, its platform-admin user and one admin token, printed once."
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Organization slug ([a-z0-9][a-z0-9-]{1,62}).")
    var org: String

    @Option(help: "Username of the platform admin.")
    var admin: String

    @Option(help: "Display name of the organization (default: the slug).")
    var name: String?

    @Flag(help: "Print {\"organization\", \"username\", \"token\", \"tokenUUID\"} as JSON.")
    var json = false

    func run() async throws {
        // Checked before touching the database; a usage error (exit 2), one line.
        guard Validation.isValidSlug(org) else {
            throw CLIError(message: BootstrapError.invalidSlug(org).description, exitCode: 2)
        }
        guard Validation.isValidUsername(admin) else {
            throw CLIError(message: BootstrapError.invalidUsername(admin).description, exitCode: 2)
        }
        let logger = Logger(label: "tessera.bootstrap")
        let result = try await bootstrapOnce(
            url: try database.resolvedURL(), org: org, name: name, admin: admin, logger: logger)
        print(json ? result.json : result.text)
    }
}

/// Runs the bootstrap transaction, mapping "already exists" to a clear error.
func bootstrapOnce(url: DatabaseURL, org: String, name: String?, admin: String, logger: Logger) async throws
    -> BootstrapResult
{
    try await withDatabase(url, logger: logger) { client in
        do {
            return try await TesseraStore(client: client, logger: logger)
                .bootstrap(organization: org, displayName: name, admin: admin)
        } catch let error as BootstrapError {
            throw CLIError(message: error.description)
        }
    }
}

extension BootstrapResult {
    var json: String {
        let object: [String: String] = [
            "organization": organization, "username": username, "token": token.plaintext,
            "tokenUUID": tokenUUID.uuidString.lowercased(),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(object)) ?? Data(), as: UTF8.self)
    }

    var text: String {
        """
        Organization: \(organization)
        Admin user:   \(username) (platform admin)
        Token UUID:   \(tokenUUID.uuidString.lowercased())
        Expires:      \(ISO8601DateFormatter().string(from: tokenExpiration))

        Admin token (shown once, it cannot be recovered; store it now):
          \(token.plaintext)
        """
    }
}
