import Foundation
import TesseraCore

/// What many cached tokens have in common: their organization, their owner's standing, their
/// scopes and limits. Interned, so a million organization tokens of one org with the same scopes
/// share one of these (issue #24: the per-entry part of the cache is fixed-size).
///
/// The `let`s never change; `head` and `count` (the entries sharing it) are touched only under the
/// cache's lock.
final class SharedFacts: Hashable, @unchecked Sendable {
    let kind: TokenKind
    let status: TokenStatus
    let orgID: UUID
    let orgSlug: String
    let ownerUserID: UUID?
    let role: MembershipRole?
    let groups: [String]
    let platformAdmin: Bool
    let ownerIsActiveMember: Bool
    let idleTimeoutDays: Int?
    let scopes: [String]
    let effective: EffectiveScopes
    let accessRules: [AccessRule]
    let allowedCidrs: [AddressRange]

    /// The first entry sharing these facts (a list through ``CacheSlot/next``), and how many do.
    var head: Int32 = -1
    var count = 0

    init(_ state: StoredTokenState, effective: EffectiveScopes) {
        let token = state.token
        kind = token.kind
        status = state.status
        orgID = token.orgID
        orgSlug = token.orgSlug
        ownerUserID = token.ownerUserID
        role = token.role
        groups = token.groups
        platformAdmin = token.platformAdmin
        ownerIsActiveMember = state.ownerIsActiveMember
        idleTimeoutDays = state.idleTimeoutDays
        scopes = token.scopes
        self.effective = effective
        accessRules = token.accessRules
        allowedCidrs = token.allowedCidrs
    }

    static func == (a: SharedFacts, b: SharedFacts) -> Bool {
        a === b
            || (a.kind == b.kind && a.status == b.status && a.orgID == b.orgID && a.orgSlug == b.orgSlug
                && a.ownerUserID == b.ownerUserID
                && a.role == b.role && a.groups == b.groups && a.platformAdmin == b.platformAdmin
                && a.ownerIsActiveMember == b.ownerIsActiveMember && a.idleTimeoutDays == b.idleTimeoutDays
                && a.scopes == b.scopes && a.effective == b.effective && a.accessRules == b.accessRules
                && a.allowedCidrs == b.allowedCidrs)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(orgID)
        hasher.combine(ownerUserID)
        hasher.combine(scopes)
        hasher.combine(effective.header)
    }
}

/// One cached answer: 112 bytes, no per-entry allocation (a label of up to 15 bytes is stored in
/// the string itself). Dates are seconds since the reference date; last use and the end of a
/// rotation's overlap are whole seconds (0: none), rounded down: an idle timeout counts days, and
/// an overlap read from the cache ends at most a second early. A free slot has `cachedUntil` 0; a
/// token's status is among its shared facts, so a slot with no facts is "no such token".
struct CacheSlot: Sendable {
    var hash: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    var tokenID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    var username = ""
    var facts: SharedFacts?
    var expiresAt = Double.nan
    var createdAt = 0.0
    var cachedUntil = 0.0
    var lastUsedAt: UInt32 = 0
    var graceUntil: UInt32 = 0
    /// Neighbours among the entries sharing `facts`; `next` also chains the free slots.
    var previous: Int32 = -1
    var next: Int32 = -1

    var isFree: Bool { cachedUntil == 0 }

    /// The lookup this slot holds (one allocation: the token id's text).
    var lookup: CachedLookup {
        guard let facts else { return .unknown }
        let token = VerifiedToken(
            tokenID: tokenID, kind: facts.kind, orgID: facts.orgID, orgSlug: facts.orgSlug, username: username,
            ownerUserID: facts.ownerUserID, role: facts.role, groups: facts.groups, platformAdmin: facts.platformAdmin,
            scopes: facts.scopes, expiresAt: expiresAt.isNaN ? nil : Date(timeIntervalSinceReferenceDate: expiresAt),
            createdAt: Date(timeIntervalSinceReferenceDate: createdAt),
            accessRules: facts.accessRules, allowedCidrs: facts.allowedCidrs)
        let state = StoredTokenState(
            token: token, status: facts.status, ownerIsActiveMember: facts.ownerIsActiveMember,
            idleTimeoutDays: facts.idleTimeoutDays, lastUsedAt: Self.date(wholeSeconds: lastUsedAt),
            graceUntil: Self.date(wholeSeconds: graceUntil))
        return .token(state, effectiveScopes: facts.effective)
    }

    static func seconds(_ date: Date?) -> Double { date?.timeIntervalSinceReferenceDate ?? .nan }

    /// `date` in whole seconds since the reference date, rounded down (0: none; lasts until 2137).
    static func wholeSeconds(_ date: Date?) -> UInt32 {
        guard let seconds = date?.timeIntervalSinceReferenceDate.rounded(.down), seconds.isFinite else { return 0 }
        return UInt32(clamping: Int64(max(1, min(seconds, Double(UInt32.max)))))
    }

    static func date(wholeSeconds seconds: UInt32) -> Date? {
        seconds == 0 ? nil : Date(timeIntervalSinceReferenceDate: Double(seconds))
    }

    static func words(_ hash: TokenHash) -> (UInt64, UInt64, UInt64, UInt64) {
        hash.bytes.withUnsafeBytes {
            (
                $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
                $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
            )
        }
    }

    var tokenHash: TokenHash {
        var copy = hash
        return TokenHash(bytes: withUnsafeBytes(of: &copy) { Array($0) })!
    }

    func holds(_ words: (UInt64, UInt64, UInt64, UInt64)) -> Bool {
        // Branch-free, like TokenHash's own comparison.
        (hash.0 ^ words.0) | (hash.1 ^ words.1) | (hash.2 ^ words.2) | (hash.3 ^ words.3) == 0
    }
}

/// An open-addressing index from a slot's hash or token id to its number: 4 bytes a bucket,
/// linear probing, at most half full, deletion by backward shift (no tombstones). The slots are
/// passed in (borrowed), so the table's two indexes and its slots are separate stored values.
struct SlotIndex {
    enum Key {
        case hash, tokenID
    }

    let key: Key
    private(set) var buckets = [UInt32](repeating: 0, count: 16)
    private(set) var count = 0

    init(_ key: Key) { self.key = key }

    private var mask: Int { buckets.count - 1 }

    static func home(_ words: (UInt64, UInt64, UInt64, UInt64)) -> Int {
        var hasher = Hasher()  // seeded per process: a bucket cannot be aimed at from outside
        hasher.combine(words.0)
        return hasher.finalize()
    }

    func home(of slot: CacheSlot) -> Int {
        switch key {
        case .hash: Self.home(slot.hash)
        case .tokenID: slot.tokenID.hashValue
        }
    }

    /// The slot with bucket hash `home` that satisfies `matches`.
    func find(_ home: Int, in slots: [CacheSlot], _ matches: (CacheSlot) -> Bool) -> Int? {
        var bucket = home & mask
        while true {
            let value = buckets[bucket]
            if value == 0 { return nil }
            if matches(slots[Int(value) - 1]) { return Int(value) - 1 }
            bucket = (bucket + 1) & mask
        }
    }

    /// Indexes `slot` (not indexed yet).
    mutating func insert(_ slot: Int, in slots: [CacheSlot]) {
        if (count + 1) * 2 > buckets.count { grow(slots) }
        var bucket = home(of: slots[slot]) & mask
        while buckets[bucket] != 0 { bucket = (bucket + 1) & mask }
        buckets[bucket] = UInt32(slot + 1)
        count += 1
    }

    mutating func remove(_ slot: Int, in slots: [CacheSlot]) {
        let mask = mask
        var hole = home(of: slots[slot]) & mask
        while buckets[hole] != UInt32(slot + 1) {
            if buckets[hole] == 0 { return }
            hole = (hole + 1) & mask
        }
        // Backward shift: each later entry of the run moves into the hole unless its home lies
        // cyclically after the hole (it would then be found before reaching it).
        var probe = hole
        while true {
            probe = (probe + 1) & mask
            let value = buckets[probe]
            if value == 0 { break }
            let ideal = home(of: slots[Int(value) - 1]) & mask
            let stays = hole <= probe ? (hole < ideal && ideal <= probe) : (hole < ideal || ideal <= probe)
            if !stays {
                buckets[hole] = value
                hole = probe
            }
        }
        buckets[hole] = 0
        count -= 1
    }

    private mutating func grow(_ slots: [CacheSlot]) {
        let old = buckets
        buckets = [UInt32](repeating: 0, count: old.count * 2)
        let mask = mask
        for value in old where value != 0 {
            var bucket = home(of: slots[Int(value) - 1]) & mask
            while buckets[bucket] != 0 { bucket = (bucket + 1) & mask }
            buckets[bucket] = value
        }
    }
}

/// The cache's storage: slots in one array (freed ones reused), found by hash and by token id
/// through two ``SlotIndex``es, and by organization or owner through the interned
/// ``SharedFacts`` they point at (each keeps a list of its slots). About 130 bytes an entry:
/// the slot's 112 and two indexes' 8 to 16 (the array's spare capacity is never touched).
struct CacheTable {
    private(set) var slots: [CacheSlot] = []
    private(set) var count = 0
    private var freeHead: Int32 = -1
    private var byHash = SlotIndex(.hash)
    private var byID = SlotIndex(.tokenID)
    private var facts: Set<SharedFacts> = []
    private var byOrg: [UUID: Set<SharedFacts>] = [:]
    private var byOwner: [UUID: Set<SharedFacts>] = [:]

    /// How many distinct ``SharedFacts`` the entries point at.
    var sharedFactsCount: Int { facts.count }

    func find(_ words: (UInt64, UInt64, UInt64, UInt64)) -> Int? {
        byHash.find(SlotIndex.home(words), in: slots) { $0.holds(words) }
    }

    private func find(tokenID: UUID) -> Int? {
        byID.find(tokenID.hashValue, in: slots) { $0.tokenID == tokenID }
    }

    /// Stores `slot` (its facts not yet interned) in place of any entry for the same hash or
    /// token id.
    mutating func insert(_ slot: CacheSlot, facts candidate: SharedFacts?) {
        if let old = find(slot.hash) { remove(old) }
        if candidate != nil, let old = find(tokenID: slot.tokenID) { remove(old) }
        let index: Int
        if freeHead >= 0 {
            index = Int(freeHead)
            freeHead = slots[index].next
        } else {
            index = slots.count
            slots.append(CacheSlot())
        }
        slots[index] = slot
        slots[index].previous = -1
        slots[index].next = -1
        count += 1
        byHash.insert(index, in: slots)
        guard let candidate else { return }
        let shared = facts.insert(candidate).memberAfterInsert
        if shared === candidate {
            byOrg[shared.orgID, default: []].insert(shared)
            if let owner = shared.ownerUserID { byOwner[owner, default: []].insert(shared) }
        }
        slots[index].facts = shared
        slots[index].next = shared.head
        if shared.head >= 0 { slots[Int(shared.head)].previous = Int32(index) }
        shared.head = Int32(index)
        shared.count += 1
        byID.insert(index, in: slots)
    }

    mutating func remove(_ index: Int) {
        byHash.remove(index, in: slots)
        if let shared = slots[index].facts {
            byID.remove(index, in: slots)
            let (previous, next) = (slots[index].previous, slots[index].next)
            if previous >= 0 { slots[Int(previous)].next = next } else { shared.head = next }
            if next >= 0 { slots[Int(next)].previous = previous }
            shared.count -= 1
            if shared.count == 0 { forget(shared) }
        }
        slots[index] = CacheSlot()
        slots[index].next = freeHead
        freeHead = Int32(index)
        count -= 1
    }

    /// Slots of the token with this id, of every token of this owner, or of this organization.
    func slots(ofToken id: UUID) -> [Int] {
        find(tokenID: id).map { [$0] } ?? []
    }

    func slots(ofOwner id: UUID) -> [Int] { members(of: byOwner[id]) }
    func slots(ofOrganization id: UUID) -> [Int] { members(of: byOrg[id]) }

    private func members(of sharing: Set<SharedFacts>?) -> [Int] {
        var found: [Int] = []
        for shared in sharing ?? [] {
            var index = shared.head
            while index >= 0 {
                found.append(Int(index))
                index = slots[Int(index)].next
            }
        }
        return found
    }

    private mutating func forget(_ shared: SharedFacts) {
        facts.remove(shared)
        Self.unlink(shared, from: shared.orgID, in: &byOrg)
        if let owner = shared.ownerUserID { Self.unlink(shared, from: owner, in: &byOwner) }
    }

    private static func unlink(_ shared: SharedFacts, from key: UUID, in index: inout [UUID: Set<SharedFacts>]) {
        guard var sharing = index.removeValue(forKey: key) else { return }
        sharing.remove(shared)
        if !sharing.isEmpty { index[key] = sharing }
    }

    mutating func touch(_ index: Int, at date: Date) {
        slots[index].lastUsedAt = CacheSlot.wholeSeconds(date)
    }

    /// Removes every entry cached until `now` or earlier; returns how many.
    mutating func sweep(now: Double) -> Int {
        var swept = 0
        for index in slots.indices where !slots[index].isFree && slots[index].cachedUntil <= now {
            remove(index)
            swept += 1
        }
        return swept
    }

    /// Removes one entry from a random place (close to random eviction); returns whether one was.
    mutating func evictOne() -> Bool {
        guard count > 0 else { return false }
        var index = Int.random(in: slots.indices)
        while slots[index].isFree { index = (index + 1) % slots.count }
        remove(index)
        return true
    }

    mutating func removeAll() {
        self = CacheTable()
    }
}
