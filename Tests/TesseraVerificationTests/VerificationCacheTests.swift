import Foundation
import TesseraCore
import TesseraPostgres
import Testing

@testable import TesseraVerification

/// The verification cache on its own: TTLs, invalidation by token, user and org, the bound.
@Suite struct VerificationCacheTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func state(org: UUID = UUID(), owner: UUID? = UUID()) -> StoredTokenState {
        StoredTokenState(
            token: VerifiedToken(
                tokenID: UUID(), kind: owner == nil ? .organization : .personal, orgID: org, orgSlug: "acme",
                username: "u", ownerUserID: owner, role: .member, groups: [], platformAdmin: false,
                scopes: ["api:read"],
                expiresAt: nil, createdAt: now),
            status: .active, ownerIsActiveMember: true)
    }

    func hash() -> TokenHash { TokenSecret.generate(kind: .personal).hash }

    @Test func ttlsPositiveAndNegative() {
        let cache = VerificationCache(settings: .init(ttl: .seconds(30), negativeTTL: .seconds(5), maxEntries: 10))
        let (known, unknown) = (hash(), hash())
        cache.store(.token(state(), effectiveScopes: ["api:read"]), for: known, now: now)
        cache.store(.unknown, for: unknown, now: now)
        #expect(cache.lookup(known, now: now.addingTimeInterval(29)) != nil)
        #expect(cache.lookup(unknown, now: now.addingTimeInterval(4)) != nil)
        #expect(cache.lookup(unknown, now: now.addingTimeInterval(6)) == nil)
        #expect(cache.lookup(known, now: now.addingTimeInterval(31)) == nil)
        #expect(cache.count == 0)
    }

    @Test func invalidationByTokenUserAndOrg() {
        let cache = VerificationCache(settings: .init(maxEntries: 100))
        let (org, other, user) = (UUID(), UUID(), UUID())
        let a = state(org: org, owner: user), b = state(org: org, owner: nil), c = state(org: other, owner: user)
        let d = state(org: other, owner: UUID())
        let hashes = [hash(), hash(), hash(), hash()]
        for (entry, h) in zip([a, b, c, d], hashes) {
            cache.store(.token(entry, effectiveScopes: []), for: h, now: now)
        }
        #expect(cache.invalidate(.token(b.token.tokenID)) == 1)
        #expect(cache.invalidate(.user(user)) == 2)  // a and c, in both orgs
        #expect(cache.invalidate(.organization(other)) == 1)  // d
        #expect(cache.count == 0)
    }

    /// The owner and org indexes follow every store, refresh, expiry and removal: a refreshed
    /// entry is found under its new facts only, a removed one under none.
    @Test func indexesFollowRefreshesAndRemovals() {
        let cache = VerificationCache(settings: .init(ttl: .seconds(30), negativeTTL: .seconds(5), maxEntries: 100))
        let (org, user) = (UUID(), UUID())
        let h = hash()
        cache.store(.unknown, for: h, now: now)
        cache.store(.token(state(org: org, owner: user), effectiveScopes: []), for: h, now: now)
        #expect(cache.invalidate(.organization(org)) == 1, "an unknown refreshed into a token is indexed")
        cache.store(.token(state(org: org, owner: user), effectiveScopes: []), for: h, now: now)
        cache.store(.unknown, for: h, now: now)
        #expect(cache.invalidate(.user(user)) == 0, "a token refreshed into an unknown is unlinked")
        #expect(cache.invalidate(.organization(org)) == 0)
        let many = (0..<50).map { _ in hash() }
        for h in many { cache.store(.token(state(org: org, owner: nil), effectiveScopes: []), for: h, now: now) }
        #expect(cache.lookup(many[0], now: now.addingTimeInterval(31)) == nil)  // expired and removed
        #expect(cache.invalidate(.organization(org)) == 49)
    }

    @Test func aLookupOverlappingAnInvalidationIsNotStored() {
        let cache = VerificationCache(settings: .init(maxEntries: 10))
        let h = hash()
        let before = cache.generation
        cache.invalidate(.user(UUID()))  // a NOTIFY arrives while the database answers
        cache.store(.token(state(), effectiveScopes: []), for: h, now: now, generation: before)
        #expect(cache.lookup(h, now: now) == nil)
        cache.store(.token(state(), effectiveScopes: []), for: h, now: now, generation: cache.generation)
        #expect(cache.lookup(h, now: now) != nil)
    }

    @Test func boundedWithExpiredEntriesSweptFirst() {
        let cache = VerificationCache(settings: .init(ttl: .seconds(30), negativeTTL: .seconds(5), maxEntries: 3))
        for _ in 0..<3 { cache.store(.unknown, for: hash(), now: now) }
        let later = now.addingTimeInterval(20)  // the three negative entries have expired
        let kept = hash()
        cache.store(.token(state(), effectiveScopes: []), for: kept, now: later)
        #expect(cache.count == 1)
        for _ in 0..<10 { cache.store(.unknown, for: hash(), now: later) }
        #expect(cache.count == 3)  // never above the bound
        #expect(VerificationCache(settings: .off).lookup(kept, now: now) == nil)
    }

    @Test func authorityRuleDropsAdminScopesOfADemotedOwner() {
        let catalog = ScopeCatalog.builtIn
        var token = state().token
        let admin = VerifiedToken(
            tokenID: token.tokenID, kind: .personal, orgID: token.orgID, orgSlug: "acme", username: "u",
            ownerUserID: token.ownerUserID, role: .admin, groups: [], platformAdmin: false, scopes: ["org:admin"],
            expiresAt: nil, createdAt: now)
        #expect(catalog.effectiveScopes(of: admin).isSuperset(of: ["org:admin", "tokens:write", "tokens:read"]))
        token = VerifiedToken(
            tokenID: admin.tokenID, kind: .personal, orgID: admin.orgID, orgSlug: "acme", username: "u",
            ownerUserID: admin.ownerUserID, role: .member, groups: [], platformAdmin: false,
            scopes: ["org:admin", "api:write"],
            expiresAt: nil, createdAt: now)
        #expect(catalog.effectiveScopes(of: token) == ["api:write", "api:read"])
    }
}

/// The compact table (issue #24) against a plain model: thousands of random stores, refreshes,
/// touches, expiries, evictions and invalidations by token, owner and org, checking after each
/// step that every hash answers as the model says and every invalidation drops exactly what the
/// model covers.
@Suite struct CacheTableModelTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    struct Modelled {
        var lookup: CachedLookup
        var expires: Date
        var token: VerifiedToken? {
            if case .token(let state, _) = lookup { state.token } else { nil }
        }
    }

    @Test func aCacheSlotIsFixedSize() {
        #expect(MemoryLayout<CacheSlot>.stride == 112)
    }

    @Test func randomOperationsMatchAPlainModel() {
        var rng = SystemRandomNumberGenerator()
        let orgs = (0..<3).map { _ in UUID() }
        let owners = (0..<5).map { _ in UUID() }
        let scopeSets: [[String]] = [["api:read"], ["api:read", "api:write"], ["tokens:read"]]
        let hashes = (0..<60).map { _ in TokenSecret.generate(kind: .organization).hash }
        let ids = (0..<60).map { _ in UUID() }
        let cache = VerificationCache(settings: .init(ttl: .seconds(30), negativeTTL: .seconds(5), maxEntries: 10_000))
        var model: [TokenHash: Modelled] = [:]
        var clock = now
        for step in 0..<4_000 {
            clock = clock.addingTimeInterval(Double.random(in: 0...0.02, using: &rng))
            let pick = Int.random(in: 0..<hashes.count, using: &rng)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0...3:
                let owner: UUID? = Bool.random(using: &rng) ? owners.randomElement(using: &rng) : nil
                let scopes = scopeSets.randomElement(using: &rng)!
                let token = VerifiedToken(
                    tokenID: ids[pick], kind: owner == nil ? .organization : .personal,
                    orgID: orgs.randomElement(using: &rng)!, orgSlug: "acme", username: "bot-\(pick)",
                    ownerUserID: owner, role: owner == nil ? nil : .member, groups: owner == nil ? [] : ["g"],
                    platformAdmin: false, scopes: scopes, expiresAt: Bool.random() ? nil : clock.addingTimeInterval(99),
                    createdAt: now)
                let state = StoredTokenState(
                    token: token, status: [.active, .inactive, .revoked].randomElement(using: &rng)!,
                    ownerIsActiveMember: Bool.random(using: &rng), idleTimeoutDays: Bool.random() ? nil : 3)
                let lookup = CachedLookup.token(state, effectiveScopes: EffectiveScopes(Set(scopes)))
                cache.store(lookup, for: hashes[pick], now: clock)
                // A token id lives under one hash: storing it elsewhere replaces the old entry.
                model = model.filter { $0.value.token?.tokenID != ids[pick] }
                model[hashes[pick]] = Modelled(lookup: lookup, expires: clock.addingTimeInterval(30))
            case 4:
                cache.store(.unknown, for: hashes[pick], now: clock)
                model[hashes[pick]] = Modelled(lookup: .unknown, expires: clock.addingTimeInterval(5))
            case 5:
                let id = ids[pick]
                let covered = model.filter { $0.value.token?.tokenID == id && $0.value.expires > clock }
                let dropped = cache.invalidate(.token(id))
                model = model.filter { $0.value.token?.tokenID != id }
                #expect(dropped >= covered.count, "step \(step)")
            case 6:
                let owner = owners.randomElement(using: &rng)!
                let live = model.filter { $0.value.token?.ownerUserID == owner && $0.value.expires > clock }.count
                let all = model.filter { $0.value.token?.ownerUserID == owner }.count
                let dropped = cache.invalidate(.user(owner))
                #expect((live...all).contains(dropped), "step \(step)")
                model = model.filter { $0.value.token?.ownerUserID != owner }
            case 7:
                let org = orgs.randomElement(using: &rng)!
                let all = model.filter { $0.value.token?.orgID == org }.count
                let live = model.filter { $0.value.token?.orgID == org && $0.value.expires > clock }.count
                let dropped = cache.invalidate(.organization(org))
                #expect((live...all).contains(dropped), "step \(step)")
                model = model.filter { $0.value.token?.orgID != org }
            case 8:
                cache.touch(hashes[pick], at: clock)
                if case .token(var state, let scopes) = model[hashes[pick]]?.lookup,
                    model[hashes[pick]]!.expires > clock
                {
                    // The cache keeps last use in whole seconds (an idle timeout counts days).
                    state.lastUsedAt = Date(
                        timeIntervalSinceReferenceDate: clock.timeIntervalSinceReferenceDate.rounded(.down))
                    model[hashes[pick]]?.lookup = .token(state, effectiveScopes: scopes)
                }
            default:
                clock = clock.addingTimeInterval(Double.random(in: 0...8, using: &rng))
            }
            for hash in hashes {
                let cached = cache.lookup(hash, now: clock)
                guard let expected = model[hash], expected.expires > clock else {
                    #expect(cached == nil, "step \(step): an entry the model does not have")
                    model[hash] = nil
                    continue
                }
                #expect(cached.map { $0.answersAlike(expected.lookup) } == true, "step \(step)")
                if case .token(let a, _) = cached, case .token(let b, _) = expected.lookup {
                    #expect(a.lastUsedAt == b.lastUsedAt && a.token.tokenIDString == b.token.tokenIDString)
                }
            }
            #expect(cache.count == model.count, "step \(step)")
        }
    }

    @Test func evictionKeepsTheBoundAndTheIndexesConsistent() {
        let cache = VerificationCache(settings: .init(ttl: .seconds(30), negativeTTL: .seconds(5), maxEntries: 50))
        let org = UUID()
        var stored: [TokenHash] = []
        for index in 0..<500 {
            let hash = TokenSecret.generate(kind: .organization).hash
            let token = VerifiedToken(
                tokenID: UUID(), kind: .organization, orgID: org, orgSlug: "acme", username: "bot-\(index)",
                ownerUserID: nil, role: nil, groups: [], platformAdmin: false, scopes: ["api:read"], expiresAt: nil,
                createdAt: now)
            cache.store(
                .token(StoredTokenState(token: token, status: .active, ownerIsActiveMember: true), effectiveScopes: []),
                for: hash, now: now)
            stored.append(hash)
            #expect(cache.count <= 50)
        }
        let live = stored.filter { cache.lookup($0, now: now) != nil }.count
        #expect(live == 50)
        #expect(cache.sharedFactsCount == 1, "tokens alike but for id, label and dates share their facts")
        #expect(cache.invalidate(.organization(org)) == 50)
        #expect(cache.count == 0)
    }
}
