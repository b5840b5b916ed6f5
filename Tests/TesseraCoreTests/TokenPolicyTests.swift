import Foundation
import TesseraCore
import Testing

/// The expiry caps and scope rules of a new token, without a database.
@Suite struct TokenPolicyTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let day: Int64 = 86_400

    func policy(max: Int? = nil, nonExpiring: Bool = false) -> TokenPolicy.Lifetime {
        .init(defaultDays: 90, maxDays: max, allowNonExpiring: nonExpiring)
    }

    @Test func expiry() throws {
        let epoch = Int64(now.timeIntervalSince1970)
        #expect(
            try TokenPolicy.expiry(requested: nil, neverExpires: false, now: now, policy: policy())
                == now.addingTimeInterval(90 * 86_400))
        #expect(
            try TokenPolicy.expiry(requested: epoch + day, neverExpires: false, now: now, policy: policy(max: 7))
                == now.addingTimeInterval(86_400))
        #expect(throws: DomainError.invalid("Token expiration must be in the future")) {
            try TokenPolicy.expiry(requested: epoch, neverExpires: false, now: now, policy: policy())
        }
        #expect(throws: DomainError.invalid("Token expiration exceeds the organization's maximum lifetime of 7 days")) {
            try TokenPolicy.expiry(requested: epoch + 8 * day, neverExpires: false, now: now, policy: policy(max: 7))
        }
        #expect(
            try TokenPolicy.expiry(requested: nil, neverExpires: true, now: now, policy: policy(nonExpiring: true))
                == nil)
        #expect(throws: DomainError.invalid("This organization does not allow tokens that never expire")) {
            try TokenPolicy.expiry(requested: nil, neverExpires: true, now: now, policy: policy())
        }
        #expect(throws: DomainError.invalid("Tokens must expire within the organization's maximum lifetime of 30 days"))
        {
            try TokenPolicy.expiry(
                requested: nil, neverExpires: true, now: now, policy: policy(max: 30, nonExpiring: true))
        }
    }

    @Test func scopes() throws {
        let catalog = ScopeCatalog([
            .init(name: "api:read", description: "", adminOnly: false, implies: []),
            .init(name: "org:admin", description: "", adminOnly: true, implies: []),
            .init(name: "platform:admin", description: "", adminOnly: true, implies: []),
        ])
        func check(_ scopes: [String], admin: Bool = false, own: Bool = false) throws(DomainError) -> [String] {
            try TokenPolicy.scopes(
                scopes, catalog: catalog, organization: "acme", grantedByAdmin: admin,
                ownPlatformAdminPersonalToken: own)
        }
        #expect(try check(["api:read", "api:read"]) == ["api:read"])
        #expect(throws: DomainError.invalidField("scopes", "must hold 1 to 100 scope names")) { try check([]) }
        #expect(throws: DomainError.invalid("Unknown scope: x is not in the catalog of organization acme")) {
            try check(["x"])
        }
        #expect(throws: DomainError.invalid("Scope org:admin can only be granted by an organization admin")) {
            try check(["org:admin"])
        }
        #expect(try check(["org:admin"], admin: true) == ["org:admin"])
        #expect(throws: DomainError.self) { try check(["platform:admin"], admin: true) }
        #expect(try check(["platform:admin"], admin: true, own: true) == ["platform:admin"])
    }
}
