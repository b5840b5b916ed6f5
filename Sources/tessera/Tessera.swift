import ArgumentParser
import Foundation
import Logging
import TesseraPostgres

@main
struct Tessera: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera",
        abstract: "Multi-tenant organization tokens: server, migrations, administration and a client.",
        subcommands: [
            ServeCommand.self, MigrateCommand.self, BootstrapCommand.self, DevCommand.self, AdminCommand.self,
            LoginCommand.self, WhoamiCommand.self, TokenCommand.self, MemberCommand.self, OrgCommand.self,
            AuditCommand.self, WebhookCommand.self, TrustCommand.self, ScanCommand.self,
        ]
    )

    /// One-line errors for people: our errors describe themselves; PostgreSQL errors are
    /// translated (PostgresNIO redacts its own descriptions on purpose).
    static func main() async {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("tessera: error: \(error.message)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            if let message = describeDatabaseError(error) {
                FileHandle.standardError.write(Data("tessera: error: \(message)\n".utf8))
                Foundation.exit(1)
            }
            // Usage errors exit 2 (as most Unix tools do), not ArgumentParser's 64.
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }

    /// `TESSERA_LOG_LEVEL` (trace, debug, info, notice, warning, error, critical), default info.
    static var logLevel: Logger.Level {
        ProcessInfo.processInfo.environment["TESSERA_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) }
            ?? .info
    }
}

/// An error the CLI reports as one line and a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32 = 1
    var description: String { message }
}
