import Foundation
import Logging
import Metrics
import NIOCore
import PostgresNIO
import Synchronization
import TesseraCore
import TesseraPostgres

/// The lookup of verification, a prepared statement: indexed probes by SHA-256, for one hash or
/// for a batch of concurrent misses (``TokenLookupBatcher``), joined with the owner's membership
/// and user record, so a leaver's, a suspended member's or a disabled user's token fails even if a
/// cascade were ever missed (defense in depth). Each row carries its hash, so a batch's answers find their callers.
struct TokenStateStatement: PostgresPreparedStatement {
    static let name = "tessera_token_states"
    static let sql = """
        SELECT t.id, t.kind, t.org_id, o.slug, t.username, t.owner_user_id, m.role, m.groups,
               coalesce(u.platform_admin, false), t.scopes, t.expires_at, t.created_at, t.status,
               (m.user_id IS NOT NULL AND u.status = 'active' AND NOT m.suspended), o.idle_timeout_days,
               t.last_used_at, t.grace_until, t.secret_hash, t.access_rules, t.allowed_cidrs::text[]
        FROM tokens t
        JOIN organizations o ON o.id = t.org_id
        LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.owner_user_id
        LEFT JOIN users u ON u.id = t.owner_user_id
        WHERE t.secret_hash = ANY($1)
        """
    static var bindingDataTypes: [PostgresDataType] { [.byteaArray] }
    typealias Row = (hash: TokenHash, state: StoredTokenState)?

    let hashes: [TokenHash]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(hashes.map { ByteBuffer(bytes: $0.bytes) })
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try Self.decode(row.makeRandomAccess()) }

    /// Columns 0-19 of this statement and of `tessera_standby_token_states` (migrations 0008, 0012).
    static func decode<Cells: TokenStateCells>(_ cells: Cells) throws -> Row {
        guard let kind = TokenKind(rawValue: try cells[1].decode(String.self)),
            let status = TokenStatus(rawValue: try cells[12].decode(String.self)),
            let hash = TokenHash(bytes: Array(buffer: try cells[17].decode(ByteBuffer.self)))
        else { return nil }
        let token = VerifiedToken(
            tokenID: try cells[0].decode(UUID.self), kind: kind, orgID: try cells[2].decode(UUID.self),
            orgSlug: try cells[3].decode(String.self), username: try cells[4].decode(String.self),
            ownerUserID: try cells[5].decode(UUID?.self),
            role: try cells[6].decode(String?.self).flatMap(MembershipRole.init(rawValue:)),
            groups: try cells[7].decode([String]?.self) ?? [], platformAdmin: try cells[8].decode(Bool.self),
            scopes: try cells[9].decode([String].self), expiresAt: try cells[10].decode(Date?.self),
            createdAt: try cells[11].decode(Date.self),
            accessRules: try cells[18].decode([String].self).compactMap(AccessRule.init(text:)),
            allowedCidrs: try cells[19].decode([String].self).compactMap { try? AddressRange($0) }
        )
        return (
            hash,
            StoredTokenState(
                token: token, status: status, ownerIsActiveMember: try cells[13].decode(Bool.self),
                idleTimeoutDays: try cells[14].decode(Int?.self), lastUsedAt: try cells[15].decode(Date?.self),
                graceUntil: try cells[16].decode(Date?.self))
        )
    }
}

/// The cells ``TokenStateStatement/decode(_:)`` reads: a row as PostgresNIO describes it, or
/// with its formats corrected (``LookupConnection``).
protocol TokenStateCells {
    subscript(_ index: Int) -> PostgresCell { get }
}

extension PostgresRandomAccessRow: TokenStateCells {}

extension TesseraStore {
    /// Verifies without any cache (the management routes: strictly consistent).
    public func verify(_ presented: String) async throws -> Result<VerifiedToken, VerificationFailure> {
        let secret: TokenSecret
        do {
            secret = try TokenSecret(parsing: presented)
        } catch {
            return .failure(.malformed)
        }
        guard let state = try await storedState(of: secret.hash) else { return .failure(.unknown) }
        return state.verify(at: clock.now())
    }

    /// The stored facts about the token with this hash, or nil when there is none.
    public func storedState(of hash: TokenHash) async throws -> StoredTokenState? {
        try await storedStates(of: [hash])[hash]
    }

    /// The stored facts about the tokens with these hashes, in one statement; unknown ones are absent.
    public func storedStates(of hashes: [TokenHash]) async throws -> [TokenHash: StoredTokenState] {
        DatabaseMetrics.inFlight.increment()
        defer { DatabaseMetrics.inFlight.decrement() }
        var states: [TokenHash: StoredTokenState] = [:]
        for row in try await client.rows(TokenStateStatement(hashes: hashes), mode: statements, logger: logger) {
            if let (hash, state) = row { states[hash] = state }
        }
        return states
    }
}

/// Gauges of database use (PostgresNIO keeps its pool statistics to itself).
public enum DatabaseMetrics {
    /// Statements and transactions running now, from this process.
    public static let inFlight = TesseraMetrics.meter("tessera_db_operations_in_flight")
}

/// How a verification ended.
public enum VerificationOutcome: Sendable, Equatable {
    /// The token verifies; `scopes` are its effective scopes (implications, authority rule).
    case verified(VerifiedToken, scopes: EffectiveScopes)
    case failed(VerificationFailure)
    /// Not in the cache and the database did not answer: callers fail closed.
    case unavailable
}

/// The hot path for gateways and CI (`/auth/verify`, `/oauth/introspect`): offline format and
/// checksum rejection, then the in-process cache, then one prepared statement on a miss.
public final class TokenVerifier: Sendable {
    public let store: TesseraStore
    public let cache: VerificationCache
    /// A miss statement (and a catalog read) waits at most this long; then its misses fail closed.
    private let lookupTimeout: Duration?
    /// After a failed lookup, misses fail closed at once for a second instead of each waiting
    /// `lookupTimeout` (a gateway in front of a dead database stays fast).
    private let lastFailure = Mutex<ContinuousClock.Instant?>(nil)
    /// Misses share statements when they arrive faster than the database answers.
    private let batcher: LookupBatcher<TokenHash, StoredTokenState>
    /// Misses on a connection of their own, the pool taking over when it fails (but for a
    /// statement past its deadline).
    private let lookups: LookupConnection?
    /// Streaming standbys answering misses (`DATABASE_READ_URL`), fenced by the listener.
    public let standby: StandbyReads?
    /// True while an invalidation listener exists but is not connected: changes made through other
    /// replicas are not heard, so a cached answer is asked again of the database and served as
    /// it is only when the database cannot be reached (see ``verify(_:)``).
    private let deaf = Atomic<Bool>(false)
    /// Counts refusals of known tokens (expired, inactive, revoked) per token (DESIGN §14).
    private let usage: UsageRecorder?
    private let revalidations = TesseraMetrics.counter("tessera_verify_deaf_revalidations_total")
    private let deafFallbacks = TesseraMetrics.counter("tessera_verify_deaf_cached_answers_total")

    /// `lookupsInFlight`: how many miss statements may run at once before misses queue and share
    /// the next one (``LookupBatcher``). `lookUpMany` replaces the statement (tests wrap it to hold
    /// a lookup at a chosen moment).
    public init(
        store: TesseraStore, cache: VerificationCache, lookupTimeout: Duration? = .seconds(1),
        lookupsInFlight: Int = TokenVerifier.defaultLookupsInFlight,
        standby: StandbyReads? = nil, usage: UsageRecorder? = nil, lookups: LookupConnection? = nil,
        lookUpMany: (@Sendable ([TokenHash]) async throws -> [TokenHash: StoredTokenState])? = nil
    ) {
        self.store = store
        self.lookups = lookups
        self.usage = usage
        self.cache = cache
        self.lookupTimeout = lookupTimeout
        self.standby = standby
        typealias LookUpMany = @Sendable ([TokenHash]) async throws -> [TokenHash: StoredTokenState]
        let primary: LookUpMany = { [store] in try await store.storedStates(of: $0) }
        var statement = primary
        if let standby {
            statement = { try await standby.lookUp($0, primary: primary) }
        }
        // The deadline is per statement, not per miss: one timer for a whole batch. A statement
        // stuck on a half-open connection (seen during a Patroni switchover) would otherwise hold
        // the only slot and every miss queued behind it.
        let bounded: LookUpMany = { [lookupTimeout, statement = lookUpMany ?? statement] hashes in
            guard let lookupTimeout else { return try await statement(hashes) }
            return try await withTimeout(lookupTimeout) { try await statement(hashes) }
        }
        self.batcher = LookupBatcher(maxInFlight: lookupsInFlight, lookUpMany: bounded)
    }

    /// One statement at a time measured best on the 2-core bench machine (uncached 4,230-4,901
    /// req/s against 2,642-4,743 with two, in the same runs); a PostgreSQL with more cores to
    /// spare for verification may want more.
    public static let defaultLookupsInFlight = 1

    public func verify(_ presented: String) async -> VerificationOutcome {
        let secret: TokenSecret
        do {
            secret = try TokenSecret(parsing: presented)
        } catch {
            return Self.count(.failed(.malformed))
        }
        let now = store.clock.now()
        let lookup: CachedLookup
        if let cached = cache.lookup(secret.hash, now: now) {
            lookup = deaf.load(ordering: .relaxed) ? await revalidate(cached, secret.hash, now: now) : cached
        } else {
            if let failed = lastFailure.withLock({ $0 }), failed.duration(to: .now) < .seconds(1) {
                return Self.count(.unavailable)
            }
            let generation = cache.generation
            do {
                lookup = try await lookUp(secret.hash, now: now)
            } catch {
                lastFailure.withLock { $0 = .now }
                store.logger.warning(
                    "token verification unavailable: database lookup failed, failing closed",
                    metadata: ["error": "\(describeDatabaseFailure(error))"])
                return Self.count(.unavailable)
            }
            cache.store(lookup, for: secret.hash, now: now, generation: generation)
        }
        switch lookup {
        case .unknown:
            return Self.count(.failed(.unknown))
        case .token(let state, let scopes):
            switch state.verify(at: now) {
            case .success(let token):
                if state.idleTimeoutDays != nil { cache.touch(secret.hash, at: now) }
                return Self.count(.verified(token, scopes: scopes))
            case .failure(let failure):
                if let usage, let outcome = UsageOutcome(failure) { usage.count(state.token, outcome, at: now) }
                return Self.count(.failed(failure))
            }
        }
    }

    /// The listener is down or between connections: a revocation made through another replica
    /// (a failover, a partition, the listener's own reconnect) would go unheard, so a cached
    /// answer is asked again of the database like a miss (batched). Only when the database cannot
    /// answer is the cached answer served: then nobody can have revoked anything through it
    /// either, short of a partition between this replica and a database others still reach.
    private func revalidate(_ cached: CachedLookup, _ hash: TokenHash, now: Date) async -> CachedLookup {
        if let failed = lastFailure.withLock({ $0 }), failed.duration(to: .now) < .seconds(1) {
            deafFallbacks.increment()
            return cached
        }
        revalidations.increment()
        let generation = cache.generation
        do {
            let fresh = try await lookUp(hash, now: now)
            cache.store(fresh, for: hash, now: now, generation: generation)
            return fresh
        } catch {
            lastFailure.withLock { $0 = .now }
            deafFallbacks.increment()
            return cached
        }
    }

    /// Told by the ``InvalidationListener``: false from its creation until it is listening, and
    /// whenever its connection is lost.
    public func setHearing(_ hearing: Bool) {
        deaf.store(!hearing, ordering: .relaxed)
    }

    private func lookUp(_ hash: TokenHash, now: Date) async throws -> CachedLookup {
        guard let state = try await storedState(hash) else { return .unknown }
        let catalog = try await catalog(for: state.token.orgID, now: now)
        return .token(state, effectiveScopes: EffectiveScopes(catalog.effectiveScopes(of: state.token)))
    }

    /// On the lookup connection when there is one. When it fails otherwise than by a statement's
    /// deadline (closed, refused, could not open in time), the pool is asked instead; a statement
    /// that timed out there fails closed, as through the pool.
    private func storedState(_ hash: TokenHash) async throws -> StoredTokenState? {
        guard let lookups else { return try await batcher.lookUp(hash) }
        do {
            return try await lookups.lookUp(hash)
        } catch let error as TimeoutError {
            throw error
        } catch {
            return try await batcher.lookUp(hash)
        }
    }

    /// Drops what a notification covers: cached token states and, for an org, its catalog.
    public func invalidate(_ target: VerificationCache.Target) {
        standby?.fence(target)
        cache.invalidate(target)
        if case .organization(let id) = target { store.catalogs.invalidate(id) }
    }

    public func invalidateAll() {
        standby?.fence(nil)
        cache.removeAll()
        store.catalogs.removeAll()
    }

    /// Largest cache confirmed entry by entry when the listener (re)connects; a bigger one is
    /// dropped whole, as re-reading it would take longer than answering its misses.
    public static let confirmableEntries = 100_000

    /// Called by the ``InvalidationListener`` when it (re)connects, LISTENing already, on its own
    /// connection, before it declares itself connected: notifications sent while no one listened
    /// are lost, so each cached answer is read again there and dropped if it changed (a revoked,
    /// deactivated or new token, an owner who left, new scopes), the rest kept. Dropping the whole
    /// cache instead would send every verification to the pool at the moment it may not reach the
    /// database yet (the listener is first to reach a new leader after a failover) and fail live
    /// tokens closed. Meanwhile the cache is deaf (hits are asked again). Returns (kept, dropped).
    public func confirmCache(on connection: PostgresConnection, logger: Logger) async throws -> (
        kept: Int, dropped: Int
    ) {
        standby?.fence(nil)
        store.catalogs.removeAll()
        let now = store.clock.now()
        let entries = cache.snapshot(now: now)
        guard entries.count <= Self.confirmableEntries else {
            cache.removeAll()
            return (0, entries.count)
        }
        var fresh: [TokenHash: StoredTokenState] = [:]
        var start = 0
        while start < entries.count {
            let chunk = entries[start..<min(start + 5_000, entries.count)].map(\.hash)
            let statement = TokenStateStatement(hashes: chunk)
            for try await row in try await connection.query(try statement.unnamed(), logger: logger) {
                if let (hash, state) = try statement.decodeRow(row) { fresh[hash] = state }
            }
            start += chunk.count
        }
        var catalogs: [UUID: ScopeCatalog] = [:]
        for orgID in Set(fresh.values.map(\.token.orgID)) {
            catalogs[orgID] = ScopeCatalog(
                try await OrganizationRepository(connection, logger: logger).scopeCatalog(orgID: orgID))
        }
        let changed = entries.filter { entry in
            let current: CachedLookup =
                if let state = fresh[entry.hash], let catalog = catalogs[state.token.orgID] {
                    .token(state, effectiveScopes: EffectiveScopes(catalog.effectiveScopes(of: state.token)))
                } else {
                    .unknown
                }
            return !entry.lookup.answersAlike(current)
        }.map(\.hash)
        cache.remove(changed)
        return (entries.count - changed.count, changed.count)
    }

    /// The org's catalog from the store's shared cache (`o:` drops it there).
    private func catalog(for orgID: UUID, now: Date) async throws -> ScopeCatalog {
        try await store.scopeCatalog(orgID: orgID, now: now, timeout: lookupTimeout)
    }

    // MARK: Metrics

    /// `tessera_verifications_total{outcome}`: ok, each failure reason, unavailable, and
    /// insufficient_scope (counted by the HTTP layer, which checks required scopes).
    static let outcomes: [String: Counter] = {
        let names = ["ok", "unavailable", "insufficient_scope"] + VerificationFailure.allCases.map(\.metricName)
        return Dictionary(
            uniqueKeysWithValues: names.map {
                ($0, TesseraMetrics.counter("tessera_verifications_total", [("outcome", $0)]))
            })
    }()

    public static func countInsufficientScope() { outcomes["insufficient_scope"]?.increment() }

    private static func count(_ outcome: VerificationOutcome) -> VerificationOutcome {
        switch outcome {
        case .verified: outcomes["ok"]?.increment()
        case .failed(let failure): outcomes[failure.metricName]?.increment()
        case .unavailable: outcomes["unavailable"]?.increment()
        }
        return outcome
    }
}

extension VerificationFailure {
    var metricName: String {
        switch self {
        case .ownerInactive: "owner_inactive"
        default: rawValue
        }
    }
}
