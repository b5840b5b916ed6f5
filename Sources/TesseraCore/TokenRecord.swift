import Foundation

/// A stored token's metadata, as listed and shown (never the secret).
public struct TokenRecord: Sendable, Equatable {
    public var id: UUID
    public var orgID: UUID
    public var orgSlug: String
    public var kind: TokenKind
    public var ownerUserID: UUID?
    public var username: String
    public var name: String
    public var description: String?
    public var scopes: [String]
    public var groups: [String]
    public var tokenPrefix: String
    public var expiresAt: Date?
    public var status: TokenStatus
    public var revokedAt: Date?
    public var revokedReason: String?
    public var createdAt: Date
    public var updatedAt: Date
    public var createdBy: String
    public var lastUsedAt: Date?
    /// Where an exchanged token came from (DESIGN §13); nil for a token made directly.
    public var federation: FederatedOrigin?
    /// Requests it may make at a gateway (empty: any), DESIGN §14.
    public var accessRules: [AccessRule] = []
    /// Addresses it may be used from (empty: any).
    public var allowedCidrs: [AddressRange] = []

    /// `direct` or `federation`.
    public var source: TokenSource { federation == nil ? .direct : .federation }

    public init(
        id: UUID, orgID: UUID, orgSlug: String, kind: TokenKind, ownerUserID: UUID?, username: String, name: String,
        description: String?, scopes: [String], groups: [String], tokenPrefix: String, expiresAt: Date?,
        status: TokenStatus, revokedAt: Date?, revokedReason: String?, createdAt: Date, updatedAt: Date,
        createdBy: String, lastUsedAt: Date?, federation: FederatedOrigin? = nil
    ) {
        self.id = id
        self.orgID = orgID
        self.orgSlug = orgSlug
        self.kind = kind
        self.ownerUserID = ownerUserID
        self.username = username
        self.name = name
        self.description = description
        self.scopes = scopes
        self.groups = groups
        self.tokenPrefix = tokenPrefix
        self.expiresAt = expiresAt
        self.status = status
        self.revokedAt = revokedAt
        self.revokedReason = revokedReason
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.createdBy = createdBy
        self.lastUsedAt = lastUsedAt
        self.federation = federation
    }

    public func isExpired(at now: Date) -> Bool {
        guard let expiresAt else { return false }
        return expiresAt <= now
    }
}

/// An organization and its token policy (DESIGN §2).
public struct OrganizationRecord: Sendable, Equatable {
    public var id: UUID
    public var slug: String
    public var displayName: String
    public var defaultTokenLifetimeDays: Int
    public var maxTokenLifetimeDays: Int?
    public var allowNonExpiringTokens: Bool
    public var idleTimeoutDays: Int?
    public var apiGroup: String?
    public var userTokensEnabled: Bool
    public var defaultScopes: [String]
    /// Live personal tokens a member may hold in the org (1: LISA's rule).
    public var personalTokenLimit: Int
    /// LISA's adminGroup: when set, a member is admin exactly while in this group (DESIGN §12).
    public var adminGroup: String?
    /// LISA's userGroup: when set, a member in neither group is suspended.
    public var userGroup: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: UUID, slug: String, displayName: String, defaultTokenLifetimeDays: Int, maxTokenLifetimeDays: Int?,
        allowNonExpiringTokens: Bool, idleTimeoutDays: Int?, apiGroup: String?, userTokensEnabled: Bool,
        defaultScopes: [String], personalTokenLimit: Int = 1, adminGroup: String? = nil, userGroup: String? = nil,
        createdAt: Date, updatedAt: Date
    ) {
        self.personalTokenLimit = personalTokenLimit
        self.adminGroup = adminGroup
        self.userGroup = userGroup
        self.id = id
        self.slug = slug
        self.displayName = displayName
        self.defaultTokenLifetimeDays = defaultTokenLifetimeDays
        self.maxTokenLifetimeDays = maxTokenLifetimeDays
        self.allowNonExpiringTokens = allowNonExpiringTokens
        self.idleTimeoutDays = idleTimeoutDays
        self.apiGroup = apiGroup
        self.userTokensEnabled = userTokensEnabled
        self.defaultScopes = defaultScopes
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}
