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
    let sessions: ConsoleSessionRepository
    let logger: Logger
    var sweepInterval: Duration = .seconds(600)

    init(store: TesseraStore) {
        self.sessions = ConsoleSessionRepository(store: store)
        self.logger = store.logger
    }

    static func keyHash(_ key: String) -> ByteBuffer { ByteBuffer(bytes: SHA256.hash(data: Data(key.utf8))) }

    func create<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        guard
            try await sessions.create(
                keyHash: Self.keyHash(key), data: try Self.encode(value),
                lifetime: Self.seconds(expires ?? .seconds(43_200)))
        else { throw PersistError.duplicate }
    }

    /// Upsert; `expires == nil` keeps the row's expiry (the middleware's contract).
    func set<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        try await sessions.set(
            keyHash: Self.keyHash(key), data: try Self.encode(value), lifetime: expires.map(Self.seconds))
    }

    func get<Object: Codable & Sendable>(key: String, as object: Object.Type) async throws -> Object? {
        try await getWithTTL(key: key, as: object)?.object
    }

    func getWithTTL<Object: Codable & Sendable>(key: String, as object: Object.Type) async throws
        -> (object: Object, ttl: Duration?)?
    {
        guard let (data, seconds) = try await sessions.get(keyHash: Self.keyHash(key)) else { return nil }
        do {
            return (try JSONDecoder().decode(Object.self, from: Data(data.utf8)), .milliseconds(Int64(seconds * 1000)))
        } catch {
            throw PersistError.invalidConversion
        }
    }

    func remove(key: String) async throws {
        try await sessions.remove(keyHash: Self.keyHash(key))
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
                try await sessions.sweep()
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
