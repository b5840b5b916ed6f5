import Foundation
import Metrics
import Synchronization
import TesseraCore
import TesseraPostgres

/// Settings of the in-process verification cache (DESIGN §6).
public struct VerificationCacheSettings: Sendable {
    /// How long a looked-up token is trusted without asking the database again. NOTIFY drops an
    /// entry within milliseconds of a change; this bounds staleness when a notification is lost.
    public var ttl: Duration
    /// How long "no such token" is remembered (a flood of random well-formed guesses).
    public var negativeTTL: Duration
    /// Bound on entries; when full, expired entries go first, then arbitrary ones.
    public var maxEntries: Int

    /// `TESSERA_CACHE_TTL` (seconds, 0 turns the cache off), `TESSERA_CACHE_MAX_ENTRIES`.
    public init(ttl: Duration = .seconds(30), negativeTTL: Duration = .seconds(5), maxEntries: Int = 100_000) {
        self.ttl = ttl
        self.negativeTTL = negativeTTL
        self.maxEntries = maxEntries
    }

    public static let off = VerificationCacheSettings(ttl: .zero, negativeTTL: .zero, maxEntries: 0)

    public var isEnabled: Bool { maxEntries > 0 && ttl > .zero }
}

/// What the database said about a token hash, with the effective scopes (implications expanded,
/// authority rule applied) computed once per lookup.
public enum CachedLookup: Sendable {
    case token(StoredTokenState, effectiveScopes: EffectiveScopes)
    case unknown
}

extension CachedLookup {
    /// Both would answer a verification the same way: the same token facts, status, owner
    /// standing, overlap and effective scopes (the last use, which only this process's hits
    /// move forward, is left out).
    func answersAlike(_ other: CachedLookup) -> Bool {
        switch (self, other) {
        case (.unknown, .unknown):
            return true
        case (.token(let a, let aScopes), .token(let b, let bScopes)):
            return a.token == b.token && a.status == b.status && a.ownerIsActiveMember == b.ownerIsActiveMember
                && a.idleTimeoutDays == b.idleTimeoutDays && a.graceUntil == b.graceUntil && aScopes == bScopes
        default:
            return false
        }
    }
}

/// A token's effective scopes, with the strings the hot path answers with made once per lookup
/// (not per request): the space-separated list and the token id.
public struct EffectiveScopes: Sendable, Equatable, ExpressibleByArrayLiteral {
    public let set: Set<String>
    /// Sorted, space-separated: `X-Tessera-Scopes` and introspection's `scope`.
    public let header: String

    public init(_ scopes: Set<String>) {
        set = scopes
        header = scopes.sorted().joined(separator: " ")
    }

    public init(arrayLiteral elements: String...) { self.init(Set(elements)) }

    public func contains(_ scope: String) -> Bool { set.contains(scope) }
}

/// A bounded map from token hash to the last lookup, dropped by token, user or organization when
/// PostgreSQL notifies a change (``InvalidationListener``). Lock-protected, never suspends.
public final class VerificationCache: Sendable {
    struct Entry {
        var lookup: CachedLookup
        var expires: Date
    }

    struct State {
        var entries: [TokenHash: Entry] = [:]
        /// token id → hash, owner → hashes, org → hashes: a `t:`, `u:` or `o:` notification drops
        /// what it covers without a scan (a cascade sends a thousand of them; scanning 50,000
        /// entries for each kept revoked tokens verifying on other replicas for 36 s, issue #14).
        var byTokenID: [UUID: TokenHash] = [:]
        var byOwner: [UUID: Set<TokenHash>] = [:]
        var byOrg: [UUID: Set<TokenHash>] = [:]
        var lastSweep = Date.distantPast
        /// Bumped by every invalidation: a lookup that started before one must not be stored
        /// after it (it may have read the row before the change committed).
        var generation: UInt64 = 0
    }

    public let settings: VerificationCacheSettings
    private let state = Mutex(State())
    private let hits = TesseraMetrics.counter("tessera_verification_cache_hits_total")
    private let misses = TesseraMetrics.counter("tessera_verification_cache_misses_total")
    private let evictions = TesseraMetrics.counter("tessera_verification_cache_evictions_total")
    private let invalidations = TesseraMetrics.counter("tessera_verification_cache_invalidated_total")
    private let size = TesseraMetrics.gauge("tessera_verification_cache_entries")

    public init(settings: VerificationCacheSettings) {
        self.settings = settings
    }

    /// The live entry for `hash`, or nil (a miss).
    public func lookup(_ hash: TokenHash, now: Date) -> CachedLookup? {
        guard settings.isEnabled else { return nil }
        let found: CachedLookup? = state.withLock { state in
            guard let entry = state.entries[hash] else { return nil }
            guard entry.expires > now else {
                Self.remove(hash, from: &state)
                return nil
            }
            return entry.lookup
        }
        if found == nil { misses.increment() } else { hits.increment() }
        return found
    }

    /// The invalidation generation now; pass it to ``store(_:for:now:generation:)``.
    public var generation: UInt64 { state.withLock { $0.generation } }

    /// Stores a lookup made when the generation was `generation`; dropped when an invalidation
    /// happened meanwhile (a NOTIFY that arrived while the database answered this lookup).
    public func store(_ lookup: CachedLookup, for hash: TokenHash, now: Date, generation: UInt64? = nil) {
        guard settings.isEnabled else { return }
        let ttl: Duration
        switch lookup {
        case .token: ttl = settings.ttl
        case .unknown: ttl = settings.negativeTTL
        }
        guard ttl > .zero else { return }
        let expires = now.addingTimeInterval(Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18)
        let (evicted, count) = state.withLock { state -> (Int, Int) in
            if let generation, generation != state.generation { return (0, state.entries.count) }
            var evicted = 0
            if state.entries[hash] == nil && state.entries.count >= settings.maxEntries {
                evicted = Self.makeRoom(in: &state, now: now)
            } else if now.timeIntervalSince(state.lastSweep) >= 10 {
                // Entries nobody asks for again (a flood of random guesses) expire but stay
                // until swept: a sweep every 10 s keeps memory at the live working set.
                evicted = Self.sweep(&state, now: now)
            }
            Self.remove(hash, from: &state)  // a refreshed entry is linked again below
            state.entries[hash] = Entry(lookup: lookup, expires: expires)
            if case .token(let stored, _) = lookup {
                state.byTokenID[stored.token.tokenID] = hash
                state.byOrg[stored.token.orgID, default: []].insert(hash)
                if let owner = stored.token.ownerUserID { state.byOwner[owner, default: []].insert(hash) }
            }
            return (evicted, state.entries.count)
        }
        if evicted > 0 { evictions.increment(by: evicted) }
        size.record(count)
    }

    /// Notes a successful use, so an idle-timeout check on later hits sees it.
    public func touch(_ hash: TokenHash, at now: Date) {
        state.withLock { state in
            guard case .token(var stored, let scopes) = state.entries[hash]?.lookup else { return }
            stored.lastUsedAt = now
            state.entries[hash]?.lookup = .token(stored, effectiveScopes: scopes)
        }
    }

    public enum Target: Sendable, Equatable {
        case token(UUID)
        case user(UUID)
        case organization(UUID)
    }

    /// Drops every entry `target` covers; returns how many.
    @discardableResult
    public func invalidate(_ target: Target) -> Int {
        drop { state in
            switch target {
            case .token(let id): state.byTokenID[id].map { [$0] } ?? []
            case .user(let id): Array(state.byOwner[id] ?? [])
            case .organization(let id): Array(state.byOrg[id] ?? [])
            }
        }
    }

    /// Forgets everything (the listener reconnected and may have missed notifications).
    public func removeAll() {
        state.withLock { state in
            let generation = state.generation &+ 1
            state = State()
            state.generation = generation
        }
        size.record(0)
    }

    public var count: Int { state.withLock { $0.entries.count } }

    /// Every live entry, to be confirmed against the database (``TokenVerifier/confirmCache(on:)``).
    func snapshot(now: Date) -> [(hash: TokenHash, lookup: CachedLookup)] {
        state.withLock { state in state.entries.compactMap { $0.value.expires > now ? ($0.key, $0.value.lookup) : nil }
        }
    }

    /// Drops these entries (their answers changed while no one listened); like ``invalidate(_:)``,
    /// a lookup already running when this happens is not stored.
    func remove(_ hashes: [TokenHash]) {
        drop { _ in hashes }
    }

    /// Drops the entries `doomed` picks, under the same lock, and moves the generation on (a
    /// lookup already running is not stored); returns how many were picked.
    @discardableResult
    private func drop(_ doomed: (State) -> [TokenHash]) -> Int {
        let (dropped, count) = state.withLock { state -> (Int, Int) in
            let hashes = doomed(state)
            for hash in hashes { Self.remove(hash, from: &state) }
            state.generation &+= 1
            return (hashes.count, state.entries.count)
        }
        if dropped > 0 { invalidations.increment(by: dropped) }
        size.record(count)
        return dropped
    }

    private static func remove(_ hash: TokenHash, from state: inout State) {
        guard case .token(let stored, _) = state.entries.removeValue(forKey: hash)?.lookup else { return }
        state.byTokenID[stored.token.tokenID] = nil
        unlink(hash, from: stored.token.orgID, in: &state.byOrg)
        if let owner = stored.token.ownerUserID { unlink(hash, from: owner, in: &state.byOwner) }
    }

    private static func unlink(_ hash: TokenHash, from key: UUID, in index: inout [UUID: Set<TokenHash>]) {
        guard var hashes = index.removeValue(forKey: key) else { return }
        hashes.remove(hash)
        if !hashes.isEmpty { index[key] = hashes }
    }

    /// Sweeps expired entries (at most once a second), else drops an arbitrary entry: dictionary
    /// order follows the per-process seeded hash of the key, so this is close to random eviction.
    private static func sweep(_ state: inout State, now: Date) -> Int {
        state.lastSweep = now
        let expired = state.entries.filter { $0.value.expires <= now }.map(\.key)
        for hash in expired { remove(hash, from: &state) }
        return expired.count
    }

    private static func makeRoom(in state: inout State, now: Date) -> Int {
        if now.timeIntervalSince(state.lastSweep) >= 1 {
            let swept = sweep(&state, now: now)
            if swept > 0 { return swept }
        }
        guard let victim = state.entries.first?.key else { return 0 }
        remove(victim, from: &state)
        return 1
    }
}
