/// A scope of an organization's catalog (DESIGN §2).
public struct ScopeInfo: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    public var adminOnly: Bool
    /// Scopes this one includes.
    public var implies: [String]

    public init(name: String, description: String, adminOnly: Bool, implies: [String]) {
        self.name = name
        self.description = description
        self.adminOnly = adminOnly
        self.implies = implies
    }
}

/// An organization: its policy and scope catalog. Nullable policy fields are always present.
public struct OrganizationInfo: Codable, Sendable {
    public var slug: String
    public var displayName: String
    public var defaultTokenLifetimeDays: Int
    public var maxTokenLifetimeDays: Int?
    public var allowNonExpiringTokens: Bool
    public var idleTimeoutDays: Int?
    public var apiGroup: String?
    /// With it set, a member is admin exactly while in this group (DESIGN §12).
    public var adminGroup: String?
    /// With it set, a member in neither group is suspended.
    public var userGroup: String?
    public var userTokensEnabled: Bool
    public var defaultScopes: [String]
    public var personalTokenLimit: Int
    public var scopes: [ScopeInfo]
    public var createdDate: Int64
    public var updatedDate: Int64

    public init(
        slug: String, displayName: String, defaultTokenLifetimeDays: Int, maxTokenLifetimeDays: Int?,
        allowNonExpiringTokens: Bool, idleTimeoutDays: Int?, apiGroup: String?, adminGroup: String? = nil,
        userGroup: String? = nil, userTokensEnabled: Bool, defaultScopes: [String], personalTokenLimit: Int,
        scopes: [ScopeInfo], createdDate: Int64, updatedDate: Int64
    ) {
        self.adminGroup = adminGroup
        self.userGroup = userGroup
        self.slug = slug
        self.displayName = displayName
        self.defaultTokenLifetimeDays = defaultTokenLifetimeDays
        self.maxTokenLifetimeDays = maxTokenLifetimeDays
        self.allowNonExpiringTokens = allowNonExpiringTokens
        self.idleTimeoutDays = idleTimeoutDays
        self.apiGroup = apiGroup
        self.userTokensEnabled = userTokensEnabled
        self.defaultScopes = defaultScopes
        self.personalTokenLimit = personalTokenLimit
        self.scopes = scopes
        self.createdDate = createdDate
        self.updatedDate = updatedDate
    }

    enum CodingKeys: String, CodingKey {
        case slug, displayName, defaultTokenLifetimeDays, maxTokenLifetimeDays, allowNonExpiringTokens, idleTimeoutDays
        case apiGroup, adminGroup, userGroup, userTokensEnabled, defaultScopes, scopes, personalTokenLimit, createdDate
        case updatedDate
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(slug, forKey: .slug)
        try c.encode(displayName, forKey: .displayName)
        try c.encode(defaultTokenLifetimeDays, forKey: .defaultTokenLifetimeDays)
        try c.encode(maxTokenLifetimeDays, forKey: .maxTokenLifetimeDays)
        try c.encode(allowNonExpiringTokens, forKey: .allowNonExpiringTokens)
        try c.encode(idleTimeoutDays, forKey: .idleTimeoutDays)
        try c.encode(apiGroup, forKey: .apiGroup)
        try c.encode(adminGroup, forKey: .adminGroup)
        try c.encode(userGroup, forKey: .userGroup)
        try c.encode(userTokensEnabled, forKey: .userTokensEnabled)
        try c.encode(defaultScopes, forKey: .defaultScopes)
        try c.encode(personalTokenLimit, forKey: .personalTokenLimit)
        try c.encode(scopes, forKey: .scopes)
        try c.encode(createdDate, forKey: .createdDate)
        try c.encode(updatedDate, forKey: .updatedDate)
    }
}

/// `GET /orgs`.
public struct OrganizationList: Codable, Sendable {
    public var organizations: [OrganizationInfo]

    public init(organizations: [OrganizationInfo]) {
        self.organizations = organizations
    }
}

/// `POST /orgs` (platform admins).
public struct OrganizationCreateRequest: Codable, Sendable {
    public var slug: String
    public var displayName: String?

    public init(slug: String, displayName: String? = nil) {
        self.slug = slug
        self.displayName = displayName
    }
}

/// `PATCH /orgs/{org}` (RFC 7396): absent fields are unchanged; the nullable ones can be cleared.
public struct OrganizationPatchRequest: Encodable, Sendable {
    public var displayName: String?
    public var defaultTokenLifetimeDays: Int?
    public var maxTokenLifetimeDays: Patch<Int> = .unchanged
    public var allowNonExpiringTokens: Bool?
    public var idleTimeoutDays: Patch<Int> = .unchanged
    public var apiGroup: Patch<String> = .unchanged
    public var adminGroup: Patch<String> = .unchanged
    public var userGroup: Patch<String> = .unchanged
    public var userTokensEnabled: Bool?
    public var defaultScopes: [String]?
    public var scopes: [ScopeInfo]?
    public var personalTokenLimit: Int?

    public init() {}

    /// True when nothing would change.
    public var isEmpty: Bool {
        func unchanged<T>(_ patch: Patch<T>) -> Bool {
            if case .unchanged = patch { return true }
            return false
        }
        return displayName == nil && defaultTokenLifetimeDays == nil && unchanged(maxTokenLifetimeDays)
            && allowNonExpiringTokens == nil && unchanged(idleTimeoutDays) && unchanged(apiGroup)
            && unchanged(adminGroup) && unchanged(userGroup)
            && userTokensEnabled == nil && defaultScopes == nil && scopes == nil && personalTokenLimit == nil
    }

    enum CodingKeys: String, CodingKey {
        case displayName, defaultTokenLifetimeDays, maxTokenLifetimeDays, allowNonExpiringTokens, idleTimeoutDays
        case apiGroup, adminGroup, userGroup, userTokensEnabled, defaultScopes, scopes, personalTokenLimit
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(displayName, forKey: .displayName)
        try c.encodeIfPresent(defaultTokenLifetimeDays, forKey: .defaultTokenLifetimeDays)
        try maxTokenLifetimeDays.encode(in: &c, forKey: .maxTokenLifetimeDays)
        try c.encodeIfPresent(allowNonExpiringTokens, forKey: .allowNonExpiringTokens)
        try idleTimeoutDays.encode(in: &c, forKey: .idleTimeoutDays)
        try apiGroup.encode(in: &c, forKey: .apiGroup)
        try adminGroup.encode(in: &c, forKey: .adminGroup)
        try userGroup.encode(in: &c, forKey: .userGroup)
        try c.encodeIfPresent(userTokensEnabled, forKey: .userTokensEnabled)
        try c.encodeIfPresent(defaultScopes, forKey: .defaultScopes)
        try c.encodeIfPresent(scopes, forKey: .scopes)
        try c.encodeIfPresent(personalTokenLimit, forKey: .personalTokenLimit)
    }
}

/// A member of an organization.
public struct MemberInfo: Codable, Sendable {
    public var username: String
    /// `admin` or `member`.
    public var role: String
    public var groups: [String]
    /// The user's status: `active` or `disabled`.
    public var status: String
    public var createdDate: Int64

    public init(username: String, role: String, groups: [String], status: String, createdDate: Int64) {
        self.username = username
        self.role = role
        self.groups = groups
        self.status = status
        self.createdDate = createdDate
    }
}

/// `GET /orgs/{org}/members`.
public struct MemberList: Codable, Sendable {
    public var members: [MemberInfo]

    public init(members: [MemberInfo]) {
        self.members = members
    }
}

/// `PUT /orgs/{org}/members/{username}`: absent keys keep what is there.
public struct MemberRequest: Codable, Sendable {
    public var role: String?
    public var groups: [String]?

    public init(role: String? = nil, groups: [String]? = nil) {
        self.role = role
        self.groups = groups
    }
}

/// A user (platform admins).
public struct UserInfo: Codable, Sendable {
    public var username: String
    public var status: String
    public var platformAdmin: Bool
    public var createdDate: Int64

    public init(username: String, status: String, platformAdmin: Bool, createdDate: Int64) {
        self.username = username
        self.status = status
        self.platformAdmin = platformAdmin
        self.createdDate = createdDate
    }
}

/// One audit event: who did what to which token or member, when, from where. Never a secret.
public struct AuditEventInfo: Codable, Sendable {
    public var id: String
    public var occurredDate: Int64
    public var actor: String?
    public var actorKind: String
    public var actorTokenUUID: String?
    public var action: String
    public var tokenUUID: String?
    public var username: String?
    public var sourceIP: String?
    public var details: [String: String]

    public init(
        id: String, occurredDate: Int64, actor: String?, actorKind: String, actorTokenUUID: String?, action: String,
        tokenUUID: String?, username: String?, sourceIP: String?, details: [String: String]
    ) {
        self.id = id
        self.occurredDate = occurredDate
        self.actor = actor
        self.actorKind = actorKind
        self.actorTokenUUID = actorTokenUUID
        self.action = action
        self.tokenUUID = tokenUUID
        self.username = username
        self.sourceIP = sourceIP
        self.details = details
    }
}

/// `GET /orgs/{org}/audit-events`: newest first, and the cursor of the next page.
public struct AuditPage: Codable, Sendable {
    public var events: [AuditEventInfo]
    public var nextCursor: String?

    public init(events: [AuditEventInfo], nextCursor: String?) {
        self.events = events
        self.nextCursor = nextCursor
    }
}

/// `GET /api/v1/auth/code`: a browser login's code (BentoCloud's names).
public struct LoginCode: Codable, Sendable {
    public var code: String
    public var url: String
    public var expires_in: Int

    public init(code: String, url: String, expires_in: Int) {
        self.code = code
        self.url = url
        self.expires_in = expires_in
    }
}

/// `GET /api/v1/auth/token?code=`: once approved, the new personal token, once.
public struct LoginIssued: Codable, Sendable {
    public var token: String
    public var name: String
    public var organization: String
    public var username: String

    public init(token: String, name: String, organization: String, username: String) {
        self.token = token
        self.name = name
        self.organization = organization
        self.username = username
    }
}
