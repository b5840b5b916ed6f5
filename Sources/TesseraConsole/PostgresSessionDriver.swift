import Crypto
import Foundation
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import TesseraPostgres
import TesseraVerification

/// hummingbird-auth's session storage on PostgreSQL (`console_sessions`, migration 0005): the
/// `PersistDriver` that `SessionMiddleware` reads and writes. Rows are keyed by the SHA-256 of the
/// key (`hbs.` + the session id from the cookie), so the table alone signs nobody in. As a
/// service it deletes expired rows every `sweepInterval`.
struct PostgresSessionDriver: PersistDriver {
    let client: PostgresClient
    let logger: Logger
    var sweepInterval: Duration = .seconds(600)

    static func keyHash(_ key: String) -> ByteBuffer { ByteBuffer(bytes: SHA256.hash(data: Data(key.utf8))) }

    /// Each statement as management routes send theirs: a bounded wait for a connection, never
    /// on a closed one (``TesseraStore/query(_:logger:)``).
    @discardableResult
    private func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await TesseraStore(client: client, logger: logger).query(query, logger: logger)
    }

    func create<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        let data = try Self.encode(value)
        let rows = try await query(
            """
            INSERT INTO console_sessions (key_hash, data, expires_at)
            VALUES (\(Self.keyHash(key)), \(data)::jsonb, now() + make_interval(secs => \(Self.seconds(expires ?? .seconds(43_200)))))
            ON CONFLICT (key_hash) DO NOTHING RETURNING 1
            """)
        if !rows.isEmpty { return }
        throw PersistError.duplicate
    }

    /// Upsert; `expires == nil` keeps the row's expiry (the middleware's contract).
    func set<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        let data = try Self.encode(value)
        let seconds = expires.map(Self.seconds)
        try await query(
            """
            INSERT INTO console_sessions (key_hash, data, expires_at)
            VALUES (\(Self.keyHash(key)), \(data)::jsonb, now() + make_interval(secs => coalesce(\(seconds)::float8, 43200)))
            ON CONFLICT (key_hash) DO UPDATE SET data = EXCLUDED.data,
                expires_at = CASE WHEN \(seconds)::float8 IS NULL THEN console_sessions.expires_at ELSE EXCLUDED.expires_at END
            """)
    }

    func get<Object: Codable & Sendable>(key: String, as object: Object.Type) async throws -> Object? {
        try await getWithTTL(key: key, as: object)?.object
    }

    func getWithTTL<Object: Codable & Sendable>(key: String, as object: Object.Type) async throws
        -> (object: Object, ttl: Duration?)?
    {
        let rows = try await query(
            """
            SELECT data::text, extract(epoch FROM expires_at - now())::float8 FROM console_sessions
            WHERE key_hash = \(Self.keyHash(key)) AND expires_at > now()
            """)
        for row in rows {
            let (data, ttl) = try row.decode((String, Double).self)
            do {
                return (try JSONDecoder().decode(Object.self, from: Data(data.utf8)), .milliseconds(Int64(ttl * 1000)))
            } catch {
                throw PersistError.invalidConversion
            }
        }
        return nil
    }

    func remove(key: String) async throws {
        try await query("DELETE FROM console_sessions WHERE key_hash = \(Self.keyHash(key))")
    }

    /// Deletes expired sessions until shutdown.
    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: sweepInterval) }
            } catch {
                return
            }
            do {
                try await query("DELETE FROM console_sessions WHERE expires_at <= now()")
            } catch {
                logger.debug("session sweep failed", metadata: ["error": "\(describeDatabaseFailure(error))"])
            }
        }
    }

    private static func encode(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
