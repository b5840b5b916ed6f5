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
    struct Key: Hashable {
        var tokenID: UUID
        var hour: Int64
    }

    struct Counts {
        var orgID: UUID
        var values: (Int64, Int64, Int64, Int64, Int64, Int64) = (0, 0, 0, 0, 0, 0)

        mutating func add(_ outcome: UsageOutcome) {
            switch outcome {
            case .valid: values.0 += 1
            case .insufficientScope: values.1 += 1
            case .expired: values.2 += 1
            case .inactive: values.3 += 1
            case .revoked: values.4 += 1
            case .address: values.5 += 1
            }
        }
    }

    struct Use {
        var at: Date
        /// Distinct client addresses of this interval, most recent last (at most five).
        var addresses: [(address: String, at: Date)] = []
    }

    struct Pending {
        var counts: [Key: Counts] = [:]
        var uses: [UUID: Use] = [:]
    }

    private let pending = Mutex(Pending())
    private let client: PostgresClient
    private let logger: Logger
    private let interval: Duration
    public let counting: Bool
    let retentionDays: Int
    static let keptAddresses = 5
    /// Hourly rows older than this become daily rows.
    static let hourlyDays = 30

    public init(
        client: PostgresClient, logger: Logger, interval: Duration = .seconds(60), counting: Bool = true,
        retentionDays: Int = 365
    ) {
        self.client = client
        self.logger = logger
        self.interval = interval
        self.counting = counting
        self.retentionDays = retentionDays
    }

    /// A verification that succeeded (`valid`), from `address`: last use and the count.
    public func record(_ token: VerifiedToken, at date: Date, address: String?) {
        let hour = Int64(date.timeIntervalSince1970 / 3600)
        pending.withLock { pending in
            if counting {
                pending.counts[Key(tokenID: token.tokenID, hour: hour), default: Counts(orgID: token.orgID)].add(.valid)
            }
            var use = pending.uses[token.tokenID] ?? Use(at: date)
            use.at = date
            if let address {
                if let index = use.addresses.firstIndex(where: { $0.address == address }) {
                    use.addresses.remove(at: index)
                } else if use.addresses.count == Self.keptAddresses {
                    use.addresses.removeFirst()
                }
                use.addresses.append((address, date))
            }
            pending.uses[token.tokenID] = use
        }
    }

    /// A refusal of a known token (no last use, no address).
    public func count(_ token: VerifiedToken, _ outcome: UsageOutcome, at date: Date) {
        guard counting else { return }
        let hour = Int64(date.timeIntervalSince1970 / 3600)
        pending.withLock {
            $0.counts[Key(tokenID: token.tokenID, hour: hour), default: Counts(orgID: token.orgID)].add(outcome)
        }
    }

    /// Tokens pending at which a flush comes early: what waits in memory stays bounded (about
    /// 400 bytes a token) however many distinct tokens verify within an interval (issue #24: a
    /// million in a few minutes held hundreds of MiB until the next flush, and the heap kept them).
    static let earlyFlushTokens = 20_000

    public func run() async throws {
        var lastMaintenance = ContinuousClock.now - .seconds(3600)
        var lastFlush = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: min(self.interval, .seconds(1))) }
            let due = lastFlush.duration(to: .now) >= interval || Task.isShuttingDownGracefully || Task.isCancelled
            guard due || pending.withLock({ max($0.uses.count, $0.counts.count) }) >= Self.earlyFlushTokens else {
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

    /// Writes what is pending: last use, counts, addresses (a statement each, sorted by token so
    /// two replicas flushing at once lock rows in the same order). A failed write keeps them.
    public func flush() async {
        let batch = pending.withLock { pending in
            defer { pending = Pending() }
            return pending
        }
        guard !batch.counts.isEmpty || !batch.uses.isEmpty else { return }
        let store = TesseraStore(client: client, logger: logger)
        do {
            try await writeUses(batch.uses, store)
        } catch {
            logger.warning(
                "could not record last use of tokens; will retry", metadata: ["count": "\(batch.uses.count)"])
            pending.withLock { pending in
                for (id, use) in batch.uses where pending.uses[id] == nil { pending.uses[id] = use }
            }
        }
        do {
            try await writeCounts(batch.counts, store)
        } catch {
            logger.warning("could not record token usage; will retry", metadata: ["count": "\(batch.counts.count)"])
            pending.withLock { pending in
                for (key, counts) in batch.counts {
                    var merged = pending.counts[key] ?? Counts(orgID: counts.orgID)
                    merged.values.0 += counts.values.0
                    merged.values.1 += counts.values.1
                    merged.values.2 += counts.values.2
                    merged.values.3 += counts.values.3
                    merged.values.4 += counts.values.4
                    merged.values.5 += counts.values.5
                    pending.counts[key] = merged
                }
            }
        }
    }

    private func writeUses(_ uses: [UUID: Use], _ store: TesseraStore) async throws {
        guard !uses.isEmpty else { return }
        let ids = uses.keys.sorted { $0.uuidString < $1.uuidString }
        let dates = ids.map { uses[$0]!.at }
        let addresses = ids.map { id in uses[id]!.addresses.last.map(\.address).flatMap(Self.checked) ?? "" }
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
        for id in ids {
            for (address, at) in uses[id]!.addresses {
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

    private func writeCounts(_ counts: [Key: Counts], _ store: TesseraStore) async throws {
        guard !counts.isEmpty else { return }
        let keys = counts.keys.sorted { ($0.tokenID.uuidString, $0.hour) < ($1.tokenID.uuidString, $1.hour) }
        let values = keys.map { counts[$0]! }
        try await store.query(
            """
            INSERT INTO token_usage AS u (token_id, org_id, granularity, bucket, valid, insufficient_scope, expired,
                                          inactive, revoked, address)
            SELECT c.id, c.org, 'hour', to_timestamp(c.hour * 3600), c.v, c.s, c.e, c.i, c.r, c.a
            FROM unnest(\(keys.map(\.tokenID))::uuid[], \(values.map(\.orgID))::uuid[], \(keys.map(\.hour))::bigint[],
                        \(values.map(\.values.0))::bigint[], \(values.map(\.values.1))::bigint[],
                        \(values.map(\.values.2))::bigint[], \(values.map(\.values.3))::bigint[],
                        \(values.map(\.values.4))::bigint[], \(values.map(\.values.5))::bigint[])
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
