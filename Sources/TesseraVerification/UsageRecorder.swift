import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TesseraCore
import TesseraPostgres

/// How a verification of a known token ended, as usage counts it (DESIGN §14).
public enum UsageOutcome: Int, Sendable, CaseIterable {
    case valid, insufficientScope, expired, inactive, revoked, address

    /// The `token_usage` column and the API's field.
    public var name: String {
        switch self {
        case .valid: "valid"
        case .insufficientScope: "insufficient_scope"
        case .expired: "expired"
        case .inactive: "inactive"
        case .revoked: "revoked"
        case .address: "address"
        }
    }

    /// The outcome a verification failure counts as; nil for tokens usage cannot name.
    public init?(_ failure: VerificationFailure) {
        switch failure {
        case .expired: self = .expired
        case .revoked: self = .revoked
        case .inactive, .ownerInactive, .idle: self = .inactive
        default: return nil
        }
    }
}

/// What verifications leave behind, without a database write per request (DESIGN §14):
/// `lastUsedDate` and the last client addresses of each token, and per token and hour the
/// verifications by outcome. Counted in memory under one lock (a dictionary write, no
/// suspension) and written in one batch per interval (default 60 s) and on graceful shutdown;
/// replicas add their counts up. With usage off (`TESSERA_USAGE=off`) only last use is kept.
public final class UsageRecorder: Service, Sendable {
    private let pending = Mutex(UsagePending(limit: UsageRecorder.pendingLimit))
    private let dropped = TesseraMetrics.counter("tessera_usage_dropped_total")
    private let client: PostgresClient
    private let logger: Logger
    private let interval: Duration
    public let counting: Bool
    let retentionDays: Int
    /// Rows a statement writes at most (8,192). A statement is its own transaction: a flush of
    /// 90,000 tokens under load took 10–20 s in one UPDATE, which held those tokens' rows (a
    /// revocation of one of them waited for it), with the binds of all its rows built at once.
    let rowsPerStatement: Int
    static let keptAddresses = 5
    /// Hourly rows older than this become daily rows.
    static let hourlyDays = 30

    public init(
        client: PostgresClient, logger: Logger, interval: Duration = .seconds(60), counting: Bool = true,
        retentionDays: Int = 365, rowsPerStatement: Int = 8_192
    ) {
        self.rowsPerStatement = max(1, rowsPerStatement)
        self.client = client
        self.logger = logger
        self.interval = interval
        self.counting = counting
        self.retentionDays = retentionDays
    }

    /// A verification that succeeded (`valid`), from `address`: last use and the count.
    public func record(_ token: VerifiedToken, at date: Date, address: String?) {
        let hour = Int64(date.timeIntervalSince1970 / 3600)
        pending.withLock {
            $0.note(
                token.tokenID, orgID: token.orgID, counting ? .valid : nil, hour: hour, use: date, address: address,
                keptAddresses: Self.keptAddresses)
        }
    }

    /// A refusal of a known token (no last use, no address).
    public func count(_ token: VerifiedToken, _ outcome: UsageOutcome, at date: Date) {
        guard counting else { return }
        let hour = Int64(date.timeIntervalSince1970 / 3600)
        pending.withLock {
            $0.note(token.tokenID, orgID: token.orgID, outcome, hour: hour, use: nil, address: nil, keptAddresses: 0)
        }
    }

    /// Tokens pending at which a flush comes before its interval, so each token is written at
    /// most once an interval below it (issue #24: an early flush at 20,000 wrote every token of
    /// random traffic over 100,000 every two seconds, three rows each, most of PostgreSQL's work
    /// under uncached verification).
    static let earlyFlushTokens = 90_000
    /// Most tokens pending: 98,304 records fill a dictionary of 2¹⁷ buckets (about 14 MiB at 112
    /// bytes a bucket) without doubling it; the 8,304 above the early flush take what arrives
    /// while a flush writes (under steady traffic few tokens are new by then). A token arriving
    /// when even that is full is not recorded (counted in `tessera_usage_dropped_total`). Without
    /// a bound, a fill of a million distinct tokens at 7,000 a second outran flushes slowed down
    /// beside it and held 2²¹ buckets (235 MiB).
    static let pendingLimit = 98_304

    public func run() async throws {
        var lastMaintenance = ContinuousClock.now - .seconds(3600)
        var lastFlush = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: min(self.interval, .seconds(1))) }
            let due = lastFlush.duration(to: .now) >= interval || Task.isShuttingDownGracefully || Task.isCancelled
            guard due || pending.withLock({ $0.tokens.count }) >= Self.earlyFlushTokens else {
                continue
            }
            lastFlush = .now
            await flush()
            if counting, lastMaintenance.duration(to: .now) >= .seconds(3600), !Task.isShuttingDownGracefully {
                lastMaintenance = .now
                await rollUp()
            }
        }
        await flush()
    }

    /// Writes what is pending: last use, counts, addresses (a statement each per
    /// `rowsPerStatement` rows, sorted by token so two replicas flushing at once lock rows in the
    /// same order: UUID's own order, its bytes', which is PostgreSQL's and that of the upper-case
    /// text earlier releases sorted by, at a fraction of the cost: formatting the text in every
    /// comparison took 7 % of the server's CPU under uncached load). A failed statement gives its
    /// rows and those after it back.
    public func flush() async {
        let started = ContinuousClock.now
        // The rows only: the batch's dictionary is gone before the writes start.
        let (tokens, uses, counts, lost) = { [counting] in
            let batch = pending.withLock { pending in
                defer { pending = UsagePending(limit: Self.pendingLimit) }
                return pending
            }
            return (batch.tokens.count, batch.useRows(), counting ? batch.countRows() : [], batch.dropped)
        }()
        if lost > 0 {
            dropped.increment(by: lost)
            logger.warning(
                "usage writes fell behind: verifications of tokens beyond the pending bound were not recorded",
                metadata: ["dropped": "\(lost)", "bound": "\(Self.pendingLimit)"])
        }
        guard !uses.isEmpty || !counts.isEmpty else { return }
        defer {
            logger.debug(
                "usage flushed", metadata: ["tokens": "\(tokens)", "duration": "\(started.duration(to: .now))"])
        }
        let store = TesseraStore(client: client, logger: logger)
        await write(uses, "could not record last use of tokens; will retry") {
            try await writeUses($0, store)
        } restore: { rest in
            pending.withLock { $0.restore(uses: rest) }
        }
        guard counting else { return }
        await write(counts, "could not record token usage; will retry") {
            try await writeCounts($0, store)
        } restore: { rest in
            pending.withLock { $0.restore(counts: rest) }
        }
    }

    /// Writes `rows` in order, `rowsPerStatement` at a time; after a failure, gives back the
    /// rows not written (those written stay: counts are never added twice).
    private func write<Row>(
        _ rows: [Row], _ failure: Logger.Message, _ statement: ([Row]) async throws -> Void,
        restore: ([Row]) -> Void
    ) async {
        var written = 0
        do {
            while written < rows.count {
                let end = min(written + rowsPerStatement, rows.count)
                try await statement(Array(rows[written..<end]))
                written = end
            }
        } catch {
            logger.warning(failure, metadata: ["count": "\(rows.count - written)"])
            restore(Array(rows[written...]))
        }
    }

    private func writeUses(_ uses: [(id: UUID, token: UsagePending.Token)], _ store: TesseraStore) async throws {
        guard !uses.isEmpty else { return }
        let ids = uses.map(\.id)
        let dates = uses.map { $0.token.lastUse ?? Date() }
        let addresses = uses.map { $0.token.addresses.mostRecent.flatMap(Self.checked) ?? "" }
        // Bounded like a management statement: a flush must not wait forever on a pool that
        // cannot connect, nor on a connection that closed under it.
        try await store.query(
            """
            UPDATE tokens t SET last_used_at = u.at, last_used_ip = nullif(u.address, '')::inet
            FROM unnest(\(ids)::uuid[], \(dates)::timestamptz[], \(addresses)::text[]) AS u(id, at, address)
            WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)
            """,
            logger: logger)
        guard counting else { return }
        var seen: [(UUID, String, Date)] = []
        for (id, token) in uses {
            for (address, at) in token.addresses.all {
                if let address = Self.checked(address) { seen.append((id, address, at)) }
            }
        }
        guard !seen.isEmpty else { return }
        let touched = Array(Set(seen.map(\.0)))
        try await store.transaction { connection in
            try await connection.statement(
                """
                INSERT INTO token_addresses (token_id, address, last_seen)
                SELECT a.id, a.address::inet, a.at
                FROM unnest(\(seen.map(\.0))::uuid[], \(seen.map(\.1))::text[], \(seen.map(\.2))::timestamptz[])
                     AS a(id, address, at)
                WHERE EXISTS (SELECT 1 FROM tokens t WHERE t.id = a.id)
                ON CONFLICT (token_id, address) DO UPDATE SET last_seen = greatest(token_addresses.last_seen, EXCLUDED.last_seen)
                """, logger: logger)
            try await connection.statement(
                """
                DELETE FROM token_addresses d USING (
                    SELECT token_id, address,
                           row_number() OVER (PARTITION BY token_id ORDER BY last_seen DESC) AS n
                    FROM token_addresses WHERE token_id = ANY(\(touched)::uuid[])) r
                WHERE d.token_id = r.token_id AND d.address = r.address AND r.n > \(Self.keptAddresses)
                """, logger: logger)
        }
    }

    private func writeCounts(_ rows: [(key: UsagePending.Key, counts: UsagePending.Counts)], _ store: TesseraStore)
        async throws
    {
        guard !rows.isEmpty else { return }
        let column = { (outcome: UsageOutcome) in rows.map { $0.counts.value(outcome) } }
        try await store.query(
            """
            INSERT INTO token_usage AS u (token_id, org_id, granularity, bucket, valid, insufficient_scope, expired,
                                          inactive, revoked, address)
            SELECT c.id, c.org, 'hour', to_timestamp(c.hour * 3600), c.v, c.s, c.e, c.i, c.r, c.a
            FROM unnest(\(rows.map(\.key.tokenID))::uuid[], \(rows.map(\.counts.orgID))::uuid[],
                        \(rows.map(\.key.hour))::bigint[], \(column(.valid))::bigint[],
                        \(column(.insufficientScope))::bigint[], \(column(.expired))::bigint[],
                        \(column(.inactive))::bigint[], \(column(.revoked))::bigint[], \(column(.address))::bigint[])
                 AS c(id, org, hour, v, s, e, i, r, a)
            WHERE EXISTS (SELECT 1 FROM tokens t WHERE t.id = c.id)
            ON CONFLICT (token_id, granularity, bucket) DO UPDATE SET
                valid = u.valid + EXCLUDED.valid, insufficient_scope = u.insufficient_scope + EXCLUDED.insufficient_scope,
                expired = u.expired + EXCLUDED.expired, inactive = u.inactive + EXCLUDED.inactive,
                revoked = u.revoked + EXCLUDED.revoked, address = u.address + EXCLUDED.address
            """,
            logger: logger)
    }

    /// Hourly rows older than 30 days become daily rows; rows older than the retention go.
    /// Each replica may run it: the rows moved are the ones its DELETE took.
    public func rollUp(now: Date = Date()) async {
        let cutoff = now.addingTimeInterval(-Double(Self.hourlyDays) * 86_400)
        let expiry = now.addingTimeInterval(-Double(retentionDays) * 86_400)
        do {
            try await TesseraStore(client: client, logger: logger).query(
                """
                WITH old AS (
                    DELETE FROM token_usage WHERE granularity = 'hour' AND bucket < \(cutoff) RETURNING *
                ), daily AS (
                    INSERT INTO token_usage AS u (token_id, org_id, granularity, bucket, valid, insufficient_scope,
                                                  expired, inactive, revoked, address)
                    SELECT token_id, org_id, 'day', date_trunc('day', bucket, 'UTC'), sum(valid), sum(insufficient_scope),
                           sum(expired), sum(inactive), sum(revoked), sum(address)
                    FROM old GROUP BY token_id, org_id, date_trunc('day', bucket, 'UTC')
                    ON CONFLICT (token_id, granularity, bucket) DO UPDATE SET
                        valid = u.valid + EXCLUDED.valid,
                        insufficient_scope = u.insufficient_scope + EXCLUDED.insufficient_scope,
                        expired = u.expired + EXCLUDED.expired, inactive = u.inactive + EXCLUDED.inactive,
                        revoked = u.revoked + EXCLUDED.revoked, address = u.address + EXCLUDED.address
                    RETURNING 1
                )
                DELETE FROM token_usage WHERE bucket < \(expiry)
                """, logger: logger)
        } catch {
            logger.warning("could not roll up token usage", metadata: ["error": "\(describeDatabaseFailure(error))"])
        }
    }

    /// The address as PostgreSQL's inet reads it, or nil (a gateway may forward anything).
    static func checked(_ address: String) -> String? {
        AddressRange.parse(address) == nil ? nil : address
    }
}
