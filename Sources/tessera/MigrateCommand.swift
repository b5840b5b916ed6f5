import ArgumentParser
import Logging
import PostgresNIO
import TesseraPostgres

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply pending sql/ migrations (a no-op when there are none)."
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Folder of NNNN_name.sql files (default: $TESSERA_MIGRATIONS_DIR, ./sql, or the build's checkout).")
    var migrations: String?

    func run() async throws {
        let logger = Logger(label: "tessera.migrate")
        let migrator = try loadMigrator(migrations)
        let url = try database.resolvedURL()
        let applied = try await withDatabase(url, logger: logger) { client in
            try await migrator.migrate(client: client, logger: logger)
        }
        print(applied.isEmpty ? "database is up to date" : "applied \(applied.map(\.name).joined(separator: ", "))")
    }
}

func loadMigrator(_ directory: String?) throws -> Migrator {
    do {
        return try Migrator(directory: directory)
    } catch let error as MigrationError {
        throw CLIError(message: error.description)
    } catch {
        throw CLIError(message: "cannot read migrations: \(error)")
    }
}

/// Applies migrations (`migrate == true`) or refuses to go on when some are pending.
func ensureMigrated(_ migrator: Migrator, migrate: Bool, client: PostgresClient, logger: Logger) async throws {
    do {
        if migrate {
            try await migrator.migrate(client: client, logger: logger)
        }
        let pending = try await migrator.pending(on: client, logger: logger)
        if !pending.isEmpty { throw MigrationError.pending(pending.map(\.name)) }
    } catch let error as MigrationError {
        throw CLIError(message: error.description)
    }
}
