import Foundation
import Logging
import Metrics
import PostgresNIO
import Synchronization
import TesseraCore
import TesseraPostgres

/// Verification misses answered by streaming standbys (`DATABASE_READ_URL`, DESIGN §10), without
/// ever bringing a revoked token back.
///
/// The race: a revocation commits on the primary, its NOTIFY reaches this replica and drops the
/// cached entry, and the next miss for that token goes to a standby that has not replayed the
/// revocation yet; the old row would be cached again. So the listener *fences* every key it
/// invalidates (a token, a user, an org) at the primary's WAL insert position, read on its own
/// connection after the notification arrived (at or past the commit's end). Until that position
/// is known the fence is "pending" (everything behind it goes to the primary). Each standby answer
/// carries the position the standby had replayed before it read the rows (migration 0008); a row
/// whose token, owner or org is fenced beyond it is asked again on the primary. A listener
/// (re)connect fences everything at once.
///
/// Creates send no NOTIFY, so a standby's "unknown" may be a token created a moment ago: unknowns
/// are re-checked on the primary, at most `recheckPerSecond` a second (a flood of random tokens
/// must not all reach the primary); beyond that the standby's answer stands.
public final class StandbyReads: Sendable {
    public static let pending = Int64.max

    struct Fences {
        /// Token, user and org ids (UUIDs never collide across the three) → WAL position.
        var keys: [UUID: Int64] = [:]
        /// Everything before this position is suspect: set at (re)connect and on a drop-all.
        var global: Int64 = StandbyReads.pending
        /// The primary's insert position as last read (for the lag gauge).
        var primary: Int64 = 0
    }

    private let standby: PostgresClient
    private let logger: Logger
    private let statements: StatementMode
    private let fences = Mutex(Fences())
    private let budget: Mutex<(available: Double, refilled: ContinuousClock.Instant)>
    public let recheckPerSecond: Double
    /// More fenced keys than this collapse into the global fence (same safety, bounded memory).
    static let maxKeys = 10_000

    private static let served = [
        "standby": TesseraMetrics.counter("tessera_verify_keys_total", [("served_by", "standby")]),
        "primary": TesseraMetrics.counter("tessera_verify_keys_total", [("served_by", "primary")]),
    ]
    private static let redirected = [
        "fenced": TesseraMetrics.counter("tessera_verify_standby_redirects_total", [("reason", "fenced")]),
        "unknown": TesseraMetrics.counter("tessera_verify_standby_redirects_total", [("reason", "unknown")]),
        "unavailable": TesseraMetrics.counter("tessera_verify_standby_redirects_total", [("reason", "unavailable")]),
    ]
    private static let unrechecked = TesseraMetrics.counter("tessera_verify_standby_unknown_unchecked_total")
    private static let lag = TesseraMetrics.gauge("tessera_standby_replay_lag_bytes")

    public init(
        standby: PostgresClient, logger: Logger, statements: StatementMode = .prepared, recheckPerSecond: Double = 50
    ) {
        self.standby = standby
        self.logger = logger
        self.statements = statements
        self.recheckPerSecond = recheckPerSecond
        self.budget = Mutex((recheckPerSecond, .now))
    }

    // MARK: Fences (called by the invalidation listener)

    /// Marks `target` (nil: everything) as changed at a position not yet known.
    public func fence(_ target: VerificationCache.Target?) {
        fences.withLock { fences in
            guard let id = target?.id else {
                fences.global = Self.pending
                fences.keys = [:]
                return
            }
            fences.keys[id] = Self.pending
            if fences.keys.count > Self.maxKeys {
                fences.global = Self.pending
                fences.keys = [:]
            }
        }
    }

    /// The primary's insert position, read after every pending fence was marked: they all take it.
    public func settle(at position: Int64) {
        fences.withLock { fences in
            fences.primary = max(fences.primary, position)
            if fences.global == Self.pending { fences.global = position }
            for (id, fence) in fences.keys where fence == Self.pending { fences.keys[id] = position }
        }
    }

    /// True when a row read at `replayed` may predate a change to its token, owner or org.
    func isFenced(_ state: StoredTokenState, replayed: Int64, in fences: borrowing Fences) -> Bool {
        if fences.global > replayed { return true }
        for id in [state.token.tokenID, state.token.orgID] + (state.token.ownerUserID.map { [$0] } ?? []) {
            if let fence = fences.keys[id], fence > replayed { return true }
        }
        return false
    }

    // MARK: Lookups

    /// The standby's answers, with fenced rows and (within the budget) unknowns asked again on
    /// the primary through `primary`. A failing standby sends the whole batch to the primary.
    public func lookUp(
        _ hashes: [TokenHash], primary: ([TokenHash]) async throws -> [TokenHash: StoredTokenState]
    ) async throws -> [TokenHash: StoredTokenState] {
        var answers: [TokenHash: StoredTokenState] = [:]
        var again: [TokenHash] = []
        if fences.withLock({ $0.global == Self.pending }) {
            // The listener is (re)connecting: every standby row would be fenced.
            Self.redirected["fenced"]?.increment(by: hashes.count)
            Self.served["primary"]?.increment(by: hashes.count)
            return try await primary(hashes)
        }
        do {
            let rows = try await standby.rows(
                StandbyTokenStatesStatement(hashes: hashes), mode: statements, logger: logger)
            var fencedCount = 0
            fences.withLock { fences in
                for case let (hash, state, replayed)? in rows {
                    if isFenced(state, replayed: replayed, in: fences) {
                        again.append(hash)
                        fencedCount += 1
                    } else {
                        answers[hash] = state
                    }
                }
                if let replayed = rows.lazy.compactMap({ $0?.replayed }).max(), fences.primary > 0 {
                    Self.lag.record(max(0, fences.primary - replayed))
                }
            }
            if fencedCount > 0 { Self.redirected["fenced"]?.increment(by: fencedCount) }
            let unknown = Set(hashes).subtracting(answers.keys).subtracting(again)
            let allowed = takeRechecks(unknown.count)
            if allowed > 0 { Self.redirected["unknown"]?.increment(by: allowed) }
            if allowed < unknown.count { Self.unrechecked.increment(by: unknown.count - allowed) }
            again += unknown.prefix(allowed)
            Self.served["standby"]?.increment(by: answers.count)
        } catch {
            logger.warning(
                "standby lookup failed; asking the primary", metadata: ["error": "\(describeDatabaseFailure(error))"])
            Self.redirected["unavailable"]?.increment(by: hashes.count)
            again = hashes
        }
        if !again.isEmpty {
            let fromPrimary = try await primary(again)
            Self.served["primary"]?.increment(by: again.count)
            for (hash, state) in fromPrimary { answers[hash] = state }
        }
        return answers
    }

    /// Up to `wanted` primary re-checks from a token bucket of `recheckPerSecond` (burst: one second's worth).
    private func takeRechecks(_ wanted: Int) -> Int {
        guard wanted > 0 else { return 0 }
        return budget.withLock { budget in
            let now = ContinuousClock.now
            let elapsed = budget.refilled.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            budget.available = min(recheckPerSecond, budget.available + seconds * recheckPerSecond)
            budget.refilled = now
            let granted = min(wanted, Int(budget.available))
            budget.available -= Double(granted)
            return granted
        }
    }
}

extension VerificationCache.Target {
    var id: UUID {
        switch self {
        case .token(let id), .user(let id), .organization(let id): id
        }
    }
}

/// `SELECT * FROM tessera_standby_token_states($1)`: the verification rows plus the WAL position
/// the answering server had replayed before reading them (migration 0008).
struct StandbyTokenStatesStatement: PostgresPreparedStatement {
    static let name = "tessera_standby_token_states"
    static let sql = "SELECT * FROM tessera_standby_token_states($1)"
    static var bindingDataTypes: [PostgresDataType] { [.byteaArray] }
    typealias Row = (hash: TokenHash, state: StoredTokenState, replayed: Int64)?

    let hashes: [TokenHash]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(hashes.map { ByteBuffer(bytes: $0.bytes) })
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        let cells = row.makeRandomAccess()
        guard let (hash, state) = try TokenStateStatement.decode(cells) else { return nil }
        return (hash, state, try cells[20].decode(Int64.self))
    }
}

/// The primary's WAL insert position as a number (the listener reads it to settle fences).
public func currentWALPosition(on connection: PostgresConnection, logger: Logger) async throws -> Int64 {
    for try await position in try await connection.query(
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint", logger: logger
    ).decode(Int64.self) {
        return position
    }
    throw StandbyReadsError.noPosition
}

enum StandbyReadsError: Error {
    /// `pg_current_wal_insert_lsn()` returned no row.
    case noPosition
}
