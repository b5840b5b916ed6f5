import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TesseraPostgres

/// Keeps `lastUsedDate` (and the last client address) without a database write per request:
/// verifications are coalesced in memory and written in one batch per interval (default 60 s, so
/// at most one write per token per minute), and once more on graceful shutdown.
public final class LastUsedRecorder: Service, Sendable {
    struct Use: Sendable {
        var at: Date
        var address: String?
    }

    private let pending = Mutex<[UUID: Use]>([:])
    private let client: PostgresClient
    private let logger: Logger
    private let interval: Duration

    public init(client: PostgresClient, logger: Logger, interval: Duration = .seconds(60)) {
        self.client = client
        self.logger = logger
        self.interval = interval
    }

    /// Notes a use; cheap (one dictionary write under a lock, no suspension), never touches the
    /// database.
    public func record(_ tokenID: UUID, at date: Date, address: String?) {
        pending.withLock { $0[tokenID] = Use(at: date, address: address) }
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await gracefulShutdownSleep(for: interval)
            await flush()
        }
        await flush()
    }

    private func gracefulShutdownSleep(for duration: Duration) async throws {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    }

    /// Writes every pending use in one statement; a failed write keeps them for the next round.
    public func flush() async {
        let batch = pending.withLock { pending in
            defer { pending = [:] }
            return pending
        }
        guard !batch.isEmpty else { return }
        let ids = Array(batch.keys)
        let dates = ids.map { batch[$0]!.at }
        let addresses = ids.map { batch[$0]!.address ?? "" }
        do {
            // Bounded like a management statement: a flush must not wait forever on a pool that
            // cannot connect, nor on a connection that closed under it.
            try await TesseraStore(client: client, logger: logger).query(
                """
                UPDATE tokens t SET last_used_at = u.at, last_used_ip = nullif(u.address, '')::inet
                FROM unnest(\(ids)::uuid[], \(dates)::timestamptz[], \(addresses)::text[]) AS u(id, at, address)
                WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)
                """,
                logger: logger)
        } catch {
            logger.warning("could not record last use of tokens; will retry", metadata: ["count": "\(ids.count)"])
            pending.withLock { pending in
                for (id, use) in batch where pending[id] == nil { pending[id] = use }
            }
        }
    }
}
