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
                && a.idleTimeoutDays == b.idleTimeoutDays
                && CacheSlot.wholeSeconds(a.graceUntil) == CacheSlot.wholeSeconds(b.graceUntil) && aScopes == bScopes
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
///
/// Entries are fixed-size slots in one array with the facts tokens share interned
/// (``CacheTable``): about 130 bytes an entry instead of the ~1 KB a dictionary of token states
/// cost (issue #24).
public final class VerificationCache: Sendable {
    struct State {
        var table = CacheTable()
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
        let words = CacheSlot.words(hash)
        let moment = now.timeIntervalSinceReferenceDate
        let found: CacheSlot? = state.withLock { state in
            guard let index = state.table.find(words) else { return nil }
            guard state.table.slots[index].cachedUntil > moment else {
                state.table.remove(index)
                return nil
            }
            return state.table.slots[index]
        }
        guard let found else {
            misses.increment()
            return nil
        }
        hits.increment()
        return found.lookup
    }

    /// The invalidation generation now; pass it to ``store(_:for:now:generation:)``.
    public var generation: UInt64 { state.withLock { $0.generation } }

    /// Stores a lookup made when the generation was `generation`; dropped when an invalidation
    /// happened meanwhile (a NOTIFY that arrived while the database answered this lookup).
    public func store(_ lookup: CachedLookup, for hash: TokenHash, now: Date, generation: UInt64? = nil) {
        guard settings.isEnabled else { return }
        var slot = CacheSlot()
        slot.hash = CacheSlot.words(hash)
        let ttl: Duration
        let facts: SharedFacts?
        switch lookup {
        case .token(let stored, let scopes):
            ttl = settings.ttl
            facts = SharedFacts(stored, effective: scopes)
            slot.tokenID = stored.token.tokenID
            slot.username = stored.token.username
            slot.expiresAt = CacheSlot.seconds(stored.token.expiresAt)
            slot.createdAt = stored.token.createdAt.timeIntervalSinceReferenceDate
            slot.lastUsedAt = CacheSlot.wholeSeconds(stored.lastUsedAt)
            slot.graceUntil = CacheSlot.wholeSeconds(stored.graceUntil)
        case .unknown:
            ttl = settings.negativeTTL
            facts = nil
        }
        guard ttl > .zero else { return }
        let expires = now.addingTimeInterval(Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18)
        slot.cachedUntil = expires.timeIntervalSinceReferenceDate
        let (evicted, count) = state.withLock { state -> (Int, Int) in
            if let generation, generation != state.generation { return (0, state.table.count) }
            var evicted = 0
            if state.table.find(slot.hash) == nil && state.table.count >= settings.maxEntries {
                evicted = Self.makeRoom(in: &state, now: now)
            } else if now.timeIntervalSince(state.lastSweep) >= 10 {
                // Entries nobody asks for again (a flood of random guesses) expire but stay
                // until swept: a sweep every 10 s keeps memory at the live working set.
                evicted = Self.sweep(&state, now: now)
            }
            state.table.insert(slot, facts: facts)
            return (evicted, state.table.count)
        }
        if evicted > 0 { evictions.increment(by: evicted) }
        size.record(count)
    }

    /// Notes a successful use, so an idle-timeout check on later hits sees it.
    public func touch(_ hash: TokenHash, at now: Date) {
        let words = CacheSlot.words(hash)
        state.withLock { state in
            guard let index = state.table.find(words), state.table.slots[index].facts != nil else { return }
            state.table.touch(index, at: now)
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
        drop { table in
            switch target {
            case .token(let id): table.slots(ofToken: id)
            case .user(let id): table.slots(ofOwner: id)
            case .organization(let id): table.slots(ofOrganization: id)
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

    public var count: Int { state.withLock { $0.table.count } }

    /// Distinct shared facts (org, owner standing, scopes, limits) behind the entries.
    var sharedFactsCount: Int { state.withLock { $0.table.sharedFactsCount } }

    /// Every live entry, to be confirmed against the database (``TokenVerifier/confirmCache(on:)``).
    func snapshot(now: Date) -> [(hash: TokenHash, lookup: CachedLookup)] {
        let moment = now.timeIntervalSinceReferenceDate
        let live = state.withLock { state in
            state.table.slots.filter { !$0.isFree && $0.cachedUntil > moment }
        }
        return live.map { ($0.tokenHash, $0.lookup) }
    }

    /// Drops these entries (their answers changed while no one listened); like ``invalidate(_:)``,
    /// a lookup already running when this happens is not stored.
    func remove(_ hashes: [TokenHash]) {
        let words = hashes.map(CacheSlot.words)
        drop { table in words.compactMap { table.find($0) } }
    }

    /// Drops the entries `doomed` picks, under the same lock, and moves the generation on (a
    /// lookup already running is not stored); returns how many were picked.
    @discardableResult
    private func drop(_ doomed: (inout CacheTable) -> [Int]) -> Int {
        let (dropped, count) = state.withLock { state -> (Int, Int) in
            // In place: a copy of the table alive during the removals would copy its slot array.
            let slots = doomed(&state.table)
            for index in slots { state.table.remove(index) }
            state.generation &+= 1
            return (slots.count, state.table.count)
        }
        if dropped > 0 { invalidations.increment(by: dropped) }
        size.record(count)
        return dropped
    }

    /// Removes what expired by `now`, noting when (the next sweep waits for its interval).
    private static func sweep(_ state: inout State, now: Date) -> Int {
        state.lastSweep = now
        return state.table.sweep(now: now.timeIntervalSinceReferenceDate)
    }

    /// Sweeps expired entries (at most once a second), else drops a random entry.
    private static func makeRoom(in state: inout State, now: Date) -> Int {
        if now.timeIntervalSince(state.lastSweep) >= 1 {
            let swept = sweep(&state, now: now)
            if swept > 0 { return swept }
        }
        return state.table.evictOne() ? 1 : 0
    }
}
