import Foundation

/// The rules a new token's expiration and scopes must keep (DESIGN §2, LISA's validation class:
/// refusals are 400). Pure: the caller brings the org's policy and catalog.
public enum TokenPolicy {
    /// An organization's lifetime policy.
    public struct Lifetime: Sendable {
        public var defaultDays: Int
        public var maxDays: Int?
        public var allowNonExpiring: Bool

        public init(defaultDays: Int, maxDays: Int?, allowNonExpiring: Bool) {
            self.defaultDays = defaultDays
            self.maxDays = maxDays
            self.allowNonExpiring = allowNonExpiring
        }
    }

    /// When a new token expires: `requested` (epoch seconds) if in the future and within the cap,
    /// nil (never) only when asked for and the org allows it with no cap, else the default lifetime.
    public static func expiry(requested: Int64?, neverExpires: Bool, now: Date, policy: Lifetime) throws(DomainError)
        -> Date?
    {
        if neverExpires {
            guard policy.allowNonExpiring, policy.maxDays == nil else {
                throw .invalid(
                    policy.maxDays.map { "Tokens must expire within the organization's maximum lifetime of \($0) days" }
                        ?? "This organization does not allow tokens that never expire")
            }
            return nil
        }
        guard let requested else { return now.addingTimeInterval(Double(policy.defaultDays) * 86_400) }
        let date = Date(timeIntervalSince1970: TimeInterval(requested))
        guard date > now else { throw .invalid("Token expiration must be in the future") }
        if let maxDays = policy.maxDays, date > now.addingTimeInterval(Double(maxDays) * 86_400) {
            throw .invalid("Token expiration exceeds the organization's maximum lifetime of \(maxDays) days")
        }
        return date
    }

    /// The scopes of a new token, sorted and unique: 1 to 100, each in the org's catalog, admin-only
    /// ones only from an admin, `platform:admin` only on a platform admin's own personal token,
    /// `scim:provision` only on organization tokens (an IdP's credential, not a person's).
    public static func scopes(
        _ requested: [String], catalog: ScopeCatalog, organization: String, grantedByAdmin: Bool,
        ownPlatformAdminPersonalToken: Bool, organizationToken: Bool = false
    ) throws(DomainError) -> [String] {
        let scopes = Array(Set(requested)).sorted()
        guard !scopes.isEmpty, scopes.count <= 100 else {
            throw .invalidField("scopes", "must hold 1 to 100 scope names")
        }
        for scope in scopes {
            guard let entry = catalog.entries[scope] else {
                throw .invalid("Unknown scope: \(scope) is not in the catalog of organization \(organization)")
            }
            if entry.adminOnly && !grantedByAdmin {
                throw .invalid("Scope \(scope) can only be granted by an organization admin")
            }
        }
        if scopes.contains("platform:admin") && !ownPlatformAdminPersonalToken {
            throw .invalid("Scope platform:admin is only for a platform admin's own personal token")
        }
        if scopes.contains(BuiltInScope.scimProvision) && !organizationToken {
            throw .invalid("Scope \(BuiltInScope.scimProvision) is only for organization tokens (an IdP's credential)")
        }
        return scopes
    }
}
