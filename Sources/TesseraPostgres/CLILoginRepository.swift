import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

/// The `cli_login_codes` table (migration 0008): pending browser logins of command-line clients,
/// keyed by the SHA-256 of the code.
public struct CLILoginRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// A pending code as the approval page shows it.
    public struct Pending: Sendable {
        public let client: String
        public let sourceIP: String?
        public let createdAt: Date
        public let approved: Bool
    }

    /// What a poll found, under the row's lock (``poll(_:)``).
    public enum Poll: Sendable {
        case unknown, tooFast, waiting
        case approved(userID: UUID, orgID: UUID, tokenName: String)
    }

    /// Stores a new code and forgets the ones expired for a day.
    public func insert(_ hash: ByteBuffer, client: String, sourceIP: String?, lifetime: TimeInterval) async throws {
        try await connection.statement(
            """
            INSERT INTO cli_login_codes (code_hash, client, source_ip, expires_at)
            VALUES (\(hash), \(client), \(sourceIP)::inet, now() + make_interval(secs => \(lifetime)))
            """, logger: logger)
        try await connection.statement(
            "DELETE FROM cli_login_codes WHERE expires_at < now() - interval '1 day'", logger: logger)
    }

    /// The live (unexpired, unspent) code.
    public func pending(_ hash: ByteBuffer) async throws -> Pending? {
        let rows = try await connection.statement(
            """
            SELECT client, host(source_ip), created_at, approved_at IS NOT NULL FROM cli_login_codes
            WHERE code_hash = \(hash) AND expires_at > now() AND spent_at IS NULL
            """, logger: logger)
        for try await (client, ip, created, approved) in rows.decode((String, String?, Date, Bool).self) {
            return Pending(client: client, sourceIP: ip, createdAt: created, approved: approved)
        }
        return nil
    }

    /// Marks the code approved; the client's name, or nil when it is unknown, expired, spent or
    /// already approved.
    public func approve(_ hash: ByteBuffer, userID: UUID, orgID: UUID, tokenName: String) async throws -> String? {
        let rows = try await connection.statement(
            """
            UPDATE cli_login_codes SET approved_by = \(userID), org_id = \(orgID), token_name = \(tokenName), approved_at = now()
            WHERE code_hash = \(hash) AND expires_at > now() AND spent_at IS NULL AND approved_at IS NULL
            RETURNING client
            """, logger: logger)
        for try await client in rows.decode(String.self) { return client }
        return nil
    }

    public func delete(_ hash: ByteBuffer) async throws {
        try await connection.statement(
            "DELETE FROM cli_login_codes WHERE code_hash = \(hash) AND spent_at IS NULL", logger: logger)
    }

    /// Records a poll (at most one each 500 ms) and spends an approved code; call in a transaction.
    public func poll(_ hash: ByteBuffer) async throws -> Poll {
        let rows = try await connection.statement(
            """
            SELECT coalesce(last_poll_at >= now() - interval '500 milliseconds', false), approved_by, org_id, token_name
            FROM cli_login_codes
            WHERE code_hash = \(hash) AND expires_at > now() AND spent_at IS NULL
            FOR UPDATE
            """, logger: logger)
        var found: (Bool, UUID?, UUID?, String?)?
        for try await row in rows.decode((Bool, UUID?, UUID?, String?).self) { found = row }
        guard let (tooFast, user, org, name) = found else { return .unknown }
        if tooFast { return .tooFast }
        let approved = user != nil
        try await connection.statement(
            """
            UPDATE cli_login_codes SET last_poll_at = now(), spent_at = CASE WHEN \(approved) THEN now() END
            WHERE code_hash = \(hash)
            """, logger: logger)
        guard let user, let org, let name else { return .waiting }
        return .approved(userID: user, orgID: org, tokenName: name)
    }

    /// Gives a spent code back (its token could not be issued).
    public func unspend(_ hash: ByteBuffer) async throws {
        try await connection.statement(
            "UPDATE cli_login_codes SET spent_at = NULL WHERE code_hash = \(hash)", logger: logger)
    }
}
