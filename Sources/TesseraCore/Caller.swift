import Foundation

/// The authenticated party of a request, resolved to one organization (DESIGN §2 tenancy rule).
public struct Caller: Sendable {
    public enum Credential: Sendable {
        /// An API token; its own org is the only org it acts in (platform admins excepted).
        case token(VerifiedToken)
        /// An OIDC JWT: identity only, role and groups come from the database.
        case jwt
    }

    public var credential: Credential
    /// nil for organization tokens.
    public var userID: UUID?
    /// The user, or an organization token's service label.
    public var username: String
    public var platformAdmin: Bool
    /// The organization this request acts in.
    public var orgID: UUID
    public var orgSlug: String
    /// The user's current role in ``orgID`` (nil for organization tokens, or for a platform admin
    /// acting in an org they are not a member of).
    public var role: MembershipRole?
    public var groups: [String]

    public init(
        credential: Credential, userID: UUID?, username: String, platformAdmin: Bool, orgID: UUID, orgSlug: String,
        role: MembershipRole?, groups: [String]
    ) {
        self.credential = credential
        self.userID = userID
        self.username = username
        self.platformAdmin = platformAdmin
        self.orgID = orgID
        self.orgSlug = orgSlug
        self.role = role
        self.groups = groups
    }

    public var token: VerifiedToken? {
        if case .token(let token) = credential { return token }
        return nil
    }

    /// Scopes granted to the credential, with implications expanded. JWT callers act with every
    /// scope their role allows (a person at a console, as in LISA).
    public func holds(_ scope: String, catalog: ScopeCatalog) -> Bool {
        guard let token else { return true }
        return catalog.expand(token.scopes).contains(scope)
    }

    /// Admin in the acting org, *now* (authority rule): personal tokens and JWT users through their
    /// current role (or platform admin acting through `/orgs/{org}` with `platform:admin`),
    /// organization tokens through an `org:admin` scope.
    public func isAdmin(catalog: ScopeCatalog) -> Bool {
        switch credential {
        case .jwt:
            return role == .admin || platformAdmin
        case .token(let token):
            switch token.kind {
            case .organization:
                return catalog.expand(token.scopes).contains("org:admin")
            case .personal:
                if role == .admin { return true }
                return platformAdmin && catalog.expand(token.scopes).contains("platform:admin")
            }
        }
    }

    /// A platform admin able to use the platform routes (`/orgs`, `/users`).
    public func isPlatformAdmin(catalog: ScopeCatalog) -> Bool {
        guard platformAdmin else { return false }
        guard let token else { return true }
        return token.kind == .personal && catalog.expand(token.scopes).contains("platform:admin")
    }
}

/// An org's scope catalog: names, `adminOnly` flags and implications.
public struct ScopeCatalog: Sendable {
    public struct Entry: Sendable, Codable, Equatable {
        public var name: String
        public var description: String
        public var adminOnly: Bool
        public var implies: [String]

        public init(name: String, description: String, adminOnly: Bool, implies: [String]) {
            self.name = name
            self.description = description
            self.adminOnly = adminOnly
            self.implies = implies
        }
    }

    public let entries: [String: Entry]

    public init(_ entries: [Entry]) {
        self.entries = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public static let builtIn = ScopeCatalog(
        BuiltInScope.all.map {
            Entry(name: $0.name, description: $0.description, adminOnly: $0.adminOnly, implies: $0.implies)
        }
    )

    /// What a verified token may do *now* (authority rule): its granted scopes with implications
    /// expanded, minus the admin-only ones when it is a personal token whose owner is no longer an
    /// admin of the org (`platform:admin` stays with a platform admin). Organization tokens keep
    /// what they were granted.
    public func effectiveScopes(of token: VerifiedToken) -> Set<String> {
        guard token.kind == .personal, token.role != .admin else { return expand(token.scopes) }
        let kept = token.scopes.filter { scope in
            guard entries[scope]?.adminOnly == true else { return true }
            return scope == "platform:admin" && token.platformAdmin
        }
        return expand(kept)
    }

    /// `scopes` plus everything they imply, transitively.
    public func expand(_ scopes: some Sequence<String>) -> Set<String> {
        var result = Set<String>()
        var pending = Array(scopes)
        while let scope = pending.popLast() {
            guard result.insert(scope).inserted else { continue }
            pending.append(contentsOf: entries[scope]?.implies ?? [])
        }
        return result
    }
}
