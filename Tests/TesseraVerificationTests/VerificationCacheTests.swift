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
