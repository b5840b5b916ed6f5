import Foundation

/// Who a verified token speaks for, and with which effective scopes (DESIGN §2, authority rule).
public struct VerifiedToken: Sendable, Equatable {
    public let tokenID: UUID
    public let kind: TokenKind
    public let orgID: UUID
    public let orgSlug: String
    /// Owner's username, or the service label of an organization token.
    public let username: String
    public let ownerUserID: UUID?
    /// The owner's role *now* (nil for organization tokens).
    public let role: MembershipRole?
    public let groups: [String]
    public let platformAdmin: Bool
    /// Scopes as granted at creation.
    public let scopes: [String]
    public let expiresAt: Date?
    public let createdAt: Date
    /// `tokenID` as the API writes it (lowercase), made once per lookup for the hot path.
    public let tokenIDString: String
    /// What the token may reach at a gateway (empty: anything its scopes allow), DESIGN §14.
    public let accessRules: [AccessRule]
    /// Where it may be used from (empty: anywhere).
    public let allowedCidrs: [AddressRange]

    public init(
        tokenID: UUID, kind: TokenKind, orgID: UUID, orgSlug: String, username: String, ownerUserID: UUID?,
        role: MembershipRole?, groups: [String], platformAdmin: Bool, scopes: [String], expiresAt: Date?,
        createdAt: Date, accessRules: [AccessRule] = [], allowedCidrs: [AddressRange] = []
    ) {
        self.tokenID = tokenID
        self.kind = kind
        self.orgID = orgID
        self.orgSlug = orgSlug
        self.username = username
        self.ownerUserID = ownerUserID
        self.role = role
        self.groups = groups
        self.platformAdmin = platformAdmin
        self.scopes = scopes
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.tokenIDString = tokenID.lowercasedString
        self.accessRules = accessRules
        self.allowedCidrs = allowedCidrs
    }
}

/// Why a presented token does not authenticate. Each has its own description for
/// `WWW-Authenticate: Bearer error="invalid_token", error_description="…"`.
public enum VerificationFailure: String, Error, Sendable, Equatable, CaseIterable {
    case malformed
    case unknown
    case expired
    case inactive
    case revoked
    /// The owner left the org, was disabled or deleted (defense in depth behind the cascade).
    case ownerInactive
    /// Unused for longer than the org's `idleTimeoutDays`.
    case idle

    public var description: String {
        switch self {
        case .malformed: "The token is malformed"
        case .unknown: "The token is unknown"
        case .expired: "The token has expired"
        case .inactive: "The token is inactive"
        case .revoked: "The token has been revoked"
        case .ownerInactive: "The token's owner is no longer an active member of the organization"
        case .idle: "The token is inactive: unused for longer than the organization's idle timeout"
        }
    }
}

/// The facts about a stored token that decide whether it verifies, as read in one query.
public struct StoredTokenState: Sendable {
    public var token: VerifiedToken
    public var status: TokenStatus
    /// Personal tokens only: the owner still has a membership and an active user record.
    public var ownerIsActiveMember: Bool
    /// The org's idle timeout (nil: off) and the token's last recorded use.
    public var idleTimeoutDays: Int?
    public var lastUsedAt: Date?
    /// A token rotated away with an overlap keeps verifying until then.
    public var graceUntil: Date?

    public init(
        token: VerifiedToken, status: TokenStatus, ownerIsActiveMember: Bool, idleTimeoutDays: Int? = nil,
        lastUsedAt: Date? = nil, graceUntil: Date? = nil
    ) {
        self.graceUntil = graceUntil
        self.token = token
        self.status = status
        self.ownerIsActiveMember = ownerIsActiveMember
        self.idleTimeoutDays = idleTimeoutDays
        self.lastUsedAt = lastUsedAt
    }

    /// Applies the rules of DESIGN §5 at `now`: revoked, inactive, expired, owner gone, idle.
    public func verify(at now: Date) -> Result<VerifiedToken, VerificationFailure> {
        switch status {
        case .revoked:
            guard let graceUntil, graceUntil > now else { return .failure(.revoked) }
        case .inactive: return .failure(.inactive)
        case .active: break
        }
        if let expiresAt = token.expiresAt, expiresAt <= now { return .failure(.expired) }
        if token.kind == .personal && !ownerIsActiveMember { return .failure(.ownerInactive) }
        if let idleTimeoutDays {
            let lastActivity = max(lastUsedAt ?? token.createdAt, token.createdAt)
            if now.timeIntervalSince(lastActivity) > Double(idleTimeoutDays) * 86_400 { return .failure(.idle) }
        }
        return .success(token)
    }
}
