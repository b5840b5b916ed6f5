import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

/// Users (`users`): global identities.
public struct UserRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Users by name (for the platform console), optionally those whose name contains `search`.
    public func search(search: String?, limit: Int) async throws -> [UserRecord] {
        let pattern = search.map(TokenRepository.containsPattern)
        let rows = try await connection.statement(
            """
            SELECT id, username, status, platform_admin, created_at, updated_at FROM users
            WHERE \(pattern)::text IS NULL OR username ILIKE \(pattern)
            ORDER BY username LIMIT \(limit)
            """,
            logger: logger)
        var users: [UserRecord] = []
        for try await (id, username, status, platformAdmin, createdAt, updatedAt) in rows.decode(
            (UUID, String, String, Bool, Date, Date).self)
        {
            users.append(
                UserRecord(
                    id: id, username: username, status: UserStatus(stored: status), platformAdmin: platformAdmin,
                    createdAt: createdAt, updatedAt: updatedAt))
        }
        return users
    }

    public func find(username: String) async throws -> UserRecord? {
        let rows = try await connection.statement(
            "SELECT id, username, status, platform_admin, created_at, updated_at FROM users WHERE username = \(username)",
            logger: logger)
        for try await (id, name, status, admin, created, updated) in rows.decode(
            (UUID, String, String, Bool, Date, Date).self)
        {
            return UserRecord(
                id: id, username: name, status: UserStatus(stored: status), platformAdmin: admin, createdAt: created,
                updatedAt: updated)
        }
        return nil
    }

    public func set(id: UUID, status: UserStatus?, platformAdmin: Bool?) async throws {
        try await connection.statement(
            """
            UPDATE users SET status = coalesce(\(status?.rawValue), status),
                             platform_admin = coalesce(\(platformAdmin), platform_admin), updated_at = now()
            WHERE id = \(id)
            """,
            logger: logger)
    }

    public func delete(id: UUID) async throws {
        try await connection.statement("DELETE FROM users WHERE id = \(id)", logger: logger)
    }

    /// Locks a user's row until the transaction ends: no membership or token can be added for
    /// them meanwhile (those inserts' foreign keys take a KEY SHARE lock on this row).
    public func lock(id: UUID) async throws {
        try await connection.statement("SELECT 1 FROM users WHERE id = \(id) FOR UPDATE", logger: logger)
    }

    /// Creates the user, or returns the existing one (raising `platformAdmin` if asked).
    public func upsert(username: String, platformAdmin: Bool) async throws -> UUID {
        let rows = try await connection.statement(
            """
            INSERT INTO users (username, platform_admin) VALUES (\(username), \(platformAdmin))
            ON CONFLICT (username) DO UPDATE
                SET platform_admin = users.platform_admin OR EXCLUDED.platform_admin, updated_at = now()
            RETURNING id
            """,
            logger: logger
        )
        return try await rows.decode(UUID.self).firstValue()
    }
}

extension UserRepository {
    /// Renames a user; false when the name is taken.
    public func rename(id: UUID, to username: String) async throws -> Bool {
        let rows = try await connection.statement(
            """
            UPDATE users SET username = \(username), updated_at = now()
            WHERE id = \(id) AND NOT EXISTS (SELECT 1 FROM users WHERE username = \(username) AND id <> \(id))
            RETURNING id
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }
}
