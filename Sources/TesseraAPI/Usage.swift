/// Verifications of one hour or day, by outcome (DESIGN §14).
public struct UsagePoint: Codable, Sendable, Equatable {
    /// The bucket's start, epoch seconds (UTC hours or days).
    public var start: Int64
    public var valid: Int64
    public var insufficientScope: Int64
    public var expired: Int64
    public var inactive: Int64
    public var revoked: Int64
    public var address: Int64

    public init(
        start: Int64, valid: Int64, insufficientScope: Int64, expired: Int64, inactive: Int64, revoked: Int64,
        address: Int64
    ) {
        self.start = start
        self.valid = valid
        self.insufficientScope = insufficientScope
        self.expired = expired
        self.inactive = inactive
        self.revoked = revoked
        self.address = address
    }
}

/// A client address a token was used from, and when last.
public struct AddressSeen: Codable, Sendable, Equatable {
    public var address: String
    public var lastSeen: Int64

    public init(address: String, lastSeen: Int64) {
        self.address = address
        self.lastSeen = lastSeen
    }
}

/// `GET /api-tokens/{tokenUUID}/usage`: every bucket of the period (zeros included), oldest first.
public struct TokenUsage: Codable, Sendable {
    public var tokenUUID: String
    public var granularity: String
    public var since: Int64
    public var until: Int64
    public var series: [UsagePoint]
    public var lastAddresses: [AddressSeen]

    public init(
        tokenUUID: String, granularity: String, since: Int64, until: Int64, series: [UsagePoint],
        lastAddresses: [AddressSeen]
    ) {
        self.tokenUUID = tokenUUID
        self.granularity = granularity
        self.since = since
        self.until = until
        self.series = series
        self.lastAddresses = lastAddresses
    }
}

/// One token's totals over a period.
public struct TokenUsageInfo: Codable, Sendable {
    public var token: TokenInfo
    public var total: Int64
    public var valid: Int64
    public var insufficientScope: Int64
    public var expired: Int64
    public var inactive: Int64
    public var revoked: Int64
    public var address: Int64

    public init(
        token: TokenInfo, total: Int64, valid: Int64, insufficientScope: Int64, expired: Int64, inactive: Int64,
        revoked: Int64, address: Int64
    ) {
        self.token = token
        self.total = total
        self.valid = valid
        self.insufficientScope = insufficientScope
        self.expired = expired
        self.inactive = inactive
        self.revoked = revoked
        self.address = address
    }
}

/// `GET /orgs/{org}/usage`: the busiest tokens of a period, tokens unused for 30 days, tokens
/// expiring within 7 days.
public struct OrganizationUsage: Codable, Sendable {
    public var since: Int64
    public var until: Int64
    public var tokens: [TokenUsageInfo]
    public var unused: [TokenInfo]
    public var expiring: [TokenInfo]

    public init(since: Int64, until: Int64, tokens: [TokenUsageInfo], unused: [TokenInfo], expiring: [TokenInfo]) {
        self.since = since
        self.until = until
        self.tokens = tokens
        self.unused = unused
        self.expiring = expiring
    }
}
