import Crypto
import Foundation
import Logging
import PostgresNIO

/// One numbered file of `sql/`, e.g. `0001_init.sql`.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String
    /// SHA-256 of the file, recorded when applied; an edited applied file is refused.
    public let checksum: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
        self.checksum = SHA256.hash(data: Array(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Reads `NNNN_name.sql` files of `directory`, in version order.
    public static func load(from directory: String) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sql") }
        var migrations: [Migration] = []
        for file in files {
            guard let underscore = file.firstIndex(of: "_"), let version = Int(file[..<underscore]), version > 0 else {
                throw MigrationError.badFileName(file)
            }
            let sql = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            migrations.append(Migration(version: version, name: String(file.dropLast(4)), sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (previous, next) in zip(migrations, migrations.dropFirst()) where previous.version == next.version {
            throw MigrationError.duplicateVersion(next.version)
        }
        return migrations
    }

    /// Where the `sql/` folder is: `TESSERA_MIGRATIONS_DIR`, `./sql`, `<binary>/../share/tessera/sql`,
    /// or the checkout this binary was built from.
    public static func defaultDirectory() throws -> String {
        do {
            return try ResourceFolder.locate("sql", marker: "0001_init.sql", environment: "TESSERA_MIGRATIONS_DIR")
        } catch ResourceFolderError.notFound(_, let places) {
            throw MigrationError.directoryNotFound(places)
        }
    }
}

public enum MigrationError: Error, CustomStringConvertible, Equatable {
    case badFileName(String)
    case duplicateVersion(Int)
    case directoryNotFound([String])
    case unknownAppliedVersion(Int)
    case checksumMismatch(version: Int, name: String)
    case pending([String])

    public var description: String {
        switch self {
        case .badFileName(let file): "migration file \(file) is not named NNNN_name.sql"
        case .duplicateVersion(let version): "two migration files have version \(version)"
        case .directoryNotFound(let places):
            "migration folder not found (set TESSERA_MIGRATIONS_DIR; looked in \(places.joined(separator: ", ")))"
        case .unknownAppliedVersion(let version):
            "the database has migration \(version) applied, which this build does not know: refusing to touch it"
        case .checksumMismatch(let version, let name):
            "migration \(name) (version \(version)) differs from the one applied to the database: migrations are forward-only"
        case .pending(let names):
            "the database has pending migrations (\(names.joined(separator: ", "))): run `tessera migrate` or start with --migrate"
        }
    }
}

/// Applies `sql/` migrations, each in its own transaction, recorded in `tessera_migrations`.
public struct Migrator: Sendable {
    public let migrations: [Migration]
    /// Serialises concurrent migrators (two replicas starting with `--migrate`).
    static let advisoryLockKey: Int64 = 0x7465_7373_6572_61  // "tessera"

    public init(migrations: [Migration]) {
        self.migrations = migrations
    }

    public init(directory: String? = nil) throws {
        self.init(migrations: try Migration.load(from: directory ?? Migration.defaultDirectory()))
    }

    /// Migrations not yet applied; throws when the database holds migrations that differ from ours.
    public func pending(on connection: PostgresConnection, logger: Logger) async throws -> [Migration] {
        let rows = try await connection.query(
            "SELECT to_regclass('tessera_migrations') IS NOT NULL",
            logger: logger
        )
        var tableExists = false
        for try await exists in rows.decode(Bool.self) { tableExists = exists }
        guard tableExists else { return migrations }

        var applied: [Int: String] = [:]
        let records = try await connection.query("SELECT version, checksum FROM tessera_migrations", logger: logger)
        for try await (version, checksum) in records.decode((Int, String).self) { applied[version] = checksum }

        let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.version, $0) })
        for (version, checksum) in applied.sorted(by: { $0.key < $1.key }) {
            guard let migration = known[version] else { throw MigrationError.unknownAppliedVersion(version) }
            guard migration.checksum == checksum else {
                throw MigrationError.checksumMismatch(version: version, name: migration.name)
            }
        }
        return migrations.filter { applied[$0.version] == nil }
    }

    public func pending(on client: PostgresClient, logger: Logger) async throws -> [Migration] {
        try await client.withConnection { try await pending(on: $0, logger: logger) }
    }

    /// Applies every pending migration in order; a no-op when there is none. Returns what it applied.
    @discardableResult
    public func migrate(client: PostgresClient, logger: Logger) async throws -> [Migration] {
        try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.advisoryLockKey))", logger: logger)
            do {
                let applied = try await migrate(connection: connection, logger: logger)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                throw error
            }
        }
    }

    private func migrate(connection: PostgresConnection, logger: Logger) async throws -> [Migration] {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS tessera_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            logger: logger
        )
        let pending = try await pending(on: connection, logger: logger)
        for migration in pending {
            logger.info("applying migration", metadata: ["migration": "\(migration.name)"])
            try await connection.withTransaction(logger: logger) { connection in
                for statement in SQLScript.statements(migration.sql) {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    """
                    INSERT INTO tessera_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """,
                    logger: logger
                )
            }
        }
        return pending
    }
}
