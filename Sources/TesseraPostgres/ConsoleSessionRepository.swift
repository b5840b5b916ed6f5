import Foundation
import Logging
import NIOCore
import PostgresNIO

/// The console's sessions (`console_sessions`, migration 0005): JSON documents keyed by the
/// SHA-256 of the session key, each with its expiry. The console's session driver is the only
/// user; every statement goes through ``TesseraStore/query(_:logger:)`` (a bounded wait for a
/// connection, never on a closed one).
public struct ConsoleSessionRepository: Sendable {
    let store: TesseraStore

    public init(store: TesseraStore) {
        self.store = store
    }

    /// Inserts a new session; false when the key is taken.
    public func create(keyHash: ByteBuffer, data: String, lifetime seconds: Double) async throws -> Bool {
        let rows = try await store.query(
            """
            INSERT INTO console_sessions (key_hash, data, expires_at)
            VALUES (\(keyHash), \(data)::jsonb, now() + make_interval(secs => \(seconds)))
            ON CONFLICT (key_hash) DO NOTHING RETURNING 1
            """, logger: store.logger)
        return !rows.isEmpty
    }

    /// Upserts a session; a nil `lifetime` keeps an existing row's expiry (12 h for a new one).
    public func set(keyHash: ByteBuffer, data: String, lifetime seconds: Double?) async throws {
        try await store.query(
            """
            INSERT INTO console_sessions (key_hash, data, expires_at)
            VALUES (\(keyHash), \(data)::jsonb, now() + make_interval(secs => coalesce(\(seconds)::float8, 43200)))
            ON CONFLICT (key_hash) DO UPDATE SET data = EXCLUDED.data,
                expires_at = CASE WHEN \(seconds)::float8 IS NULL THEN console_sessions.expires_at ELSE EXCLUDED.expires_at END
            """, logger: store.logger)
    }

    /// A live session's document and the seconds it has left.
    public func get(keyHash: ByteBuffer) async throws -> (data: String, secondsLeft: Double)? {
        let rows = try await store.query(
            """
            SELECT data::text, extract(epoch FROM expires_at - now())::float8 FROM console_sessions
            WHERE key_hash = \(keyHash) AND expires_at > now()
            """, logger: store.logger)
        for row in rows {
            let (data, seconds) = try row.decode((String, Double).self)
            return (data, seconds)
        }
        return nil
    }

    public func remove(keyHash: ByteBuffer) async throws {
        try await store.query("DELETE FROM console_sessions WHERE key_hash = \(keyHash)", logger: store.logger)
    }

    /// Deletes the expired sessions.
    public func sweep() async throws {
        try await store.query("DELETE FROM console_sessions WHERE expires_at <= now()", logger: store.logger)
    }
}
