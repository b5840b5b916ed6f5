/// A token as the API shows it: LISA's TokenInfo plus ours (DESIGN §4.1). Every key is always
/// present, `null` when empty, as LISA does; `token` (the secret) only in the answer that made it.
public struct TokenInfo: Codable, Sendable, Equatable {
    /// The secret: only in the create and rotate answers.
    public var token: String?
    public var tokenUUID: String
    public var tokenExpiration: Int64?
    public var createdDate: Int64
    public var username: String
    public var createdBy: String
    public var name: String
    public var groups: [String]
    public var isSystemToken: Bool
    public var isExpired: Bool
    /// Always false: Tessera never holds unhashed tokens.
    public var isLegacy: Bool
    public var organization: String
    /// `personal` or `organization`.
    public var kind: String
    public var description: String?
    public var scopes: [String]
    /// `active`, `inactive` or `revoked`.
    public var status: String
    public var revokedReason: String?
    public var revokedDate: Int64?
    public var updatedDate: Int64
    public var lastUsedDate: Int64?
    public var tokenPrefix: String
    /// `direct`, or `federation` for a token exchanged under a trust policy (DESIGN §13).
    public var source: String
    /// The trust policy and subject token of a `federation` token.
    public var federation: TokenFederationInfo?
    /// What it may reach at a gateway (empty: anything its scopes allow), DESIGN §14.
    public var accessRules: [AccessRuleInfo]
    /// Where it may be used from (empty: anywhere).
    public var allowedCidrs: [String]

    public init(
        token: String? = nil, tokenUUID: String, tokenExpiration: Int64?, createdDate: Int64, username: String,
        createdBy: String, name: String, groups: [String], isSystemToken: Bool, isExpired: Bool,
        organization: String, kind: String, description: String?, scopes: [String], status: String,
        revokedReason: String?, revokedDate: Int64?, updatedDate: Int64, lastUsedDate: Int64?, tokenPrefix: String,
        source: String = "direct", federation: TokenFederationInfo? = nil, accessRules: [AccessRuleInfo] = [],
        allowedCidrs: [String] = []
    ) {
        self.token = token
        self.tokenUUID = tokenUUID
        self.tokenExpiration = tokenExpiration
        self.createdDate = createdDate
        self.username = username
        self.createdBy = createdBy
        self.name = name
        self.groups = groups
        self.isSystemToken = isSystemToken
        self.isExpired = isExpired
        self.isLegacy = false
        self.organization = organization
        self.kind = kind
        self.description = description
        self.scopes = scopes
        self.status = status
        self.revokedReason = revokedReason
        self.revokedDate = revokedDate
        self.updatedDate = updatedDate
        self.lastUsedDate = lastUsedDate
        self.tokenPrefix = tokenPrefix
        self.source = source
        self.federation = federation
        self.accessRules = accessRules
        self.allowedCidrs = allowedCidrs
    }

    enum CodingKeys: String, CodingKey {
        case token, tokenUUID, tokenExpiration, createdDate, username, createdBy, name, groups, isSystemToken
        case isExpired, isLegacy, organization, kind, description, scopes, status, revokedReason, revokedDate
        case updatedDate, lastUsedDate, tokenPrefix, source, federation, accessRules, allowedCidrs
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(token, forKey: .token)
        try c.encode(tokenUUID, forKey: .tokenUUID)
        try c.encode(tokenExpiration, forKey: .tokenExpiration)
        try c.encode(createdDate, forKey: .createdDate)
        try c.encode(username, forKey: .username)
        try c.encode(createdBy, forKey: .createdBy)
        try c.encode(name, forKey: .name)
        try c.encode(groups, forKey: .groups)
        try c.encode(isSystemToken, forKey: .isSystemToken)
        try c.encode(isExpired, forKey: .isExpired)
        try c.encode(isLegacy, forKey: .isLegacy)
        try c.encode(organization, forKey: .organization)
        try c.encode(kind, forKey: .kind)
        try c.encode(description, forKey: .description)
        try c.encode(scopes, forKey: .scopes)
        try c.encode(status, forKey: .status)
        try c.encode(revokedReason, forKey: .revokedReason)
        try c.encode(revokedDate, forKey: .revokedDate)
        try c.encode(updatedDate, forKey: .updatedDate)
        try c.encode(lastUsedDate, forKey: .lastUsedDate)
        try c.encode(tokenPrefix, forKey: .tokenPrefix)
        try c.encode(source, forKey: .source)
        try c.encodeIfPresent(federation, forKey: .federation)
        try c.encode(accessRules, forKey: .accessRules)
        try c.encode(allowedCidrs, forKey: .allowedCidrs)
    }
}

/// One access rule: an HTTP method (or `*`), a path pattern (`*` one segment, `**` any number),
/// and optionally an exact host.
public struct AccessRuleInfo: Codable, Sendable, Equatable {
    public var method: String
    public var path: String
    public var host: String?

    public init(method: String, path: String, host: String? = nil) {
        self.method = method
        self.path = path
        self.host = host
    }
}

/// Where a `federation` token came from: its trust policy and the OIDC token's `iss`, `sub`, `jti`.
public struct TokenFederationInfo: Codable, Sendable, Equatable {
    public var trustPolicyId: String
    public var issuer: String
    public var subject: String
    public var jti: String

    public init(trustPolicyId: String, issuer: String, subject: String, jti: String) {
        self.trustPolicyId = trustPolicyId
        self.issuer = issuer
        self.subject = subject
        self.jti = jti
    }
}

/// `GET /api-tokens`: a page of tokens (LISA's `{"tokens": [...]}`) and the cursor of the next
/// page, absent on the last.
public struct TokenList: Codable, Sendable {
    public var tokens: [TokenInfo]
    public var nextCursor: String?

    public init(tokens: [TokenInfo], nextCursor: String?) {
        self.tokens = tokens
        self.nextCursor = nextCursor
    }
}

/// `DELETE /api-tokens/{tokenUUID}` (LISA's answer).
public struct TokenDeleted: Codable, Sendable {
    public var message: String
    public var tokenUUID: String

    public init(message: String, tokenUUID: String) {
        self.message = message
        self.tokenUUID = tokenUUID
    }
}

/// `POST /api-tokens` and `POST /api-tokens/{username}`. `"tokenExpiration": null` asks for a
/// token that never expires (org policy permitting), which an absent key does not.
public struct TokenCreateRequest: Codable, Sendable {
    public var name: String
    public var description: String?
    public var scopes: [String]?
    public var tokenExpiration: Int64?
    public var neverExpires: Bool
    public var isSystemToken: Bool?
    public var groups: [String]?
    public var accessRules: [AccessRuleInfo]?
    public var allowedCidrs: [String]?

    public init(
        name: String, description: String? = nil, scopes: [String]? = nil, tokenExpiration: Int64? = nil,
        neverExpires: Bool = false, isSystemToken: Bool? = nil, groups: [String]? = nil,
        accessRules: [AccessRuleInfo]? = nil, allowedCidrs: [String]? = nil
    ) {
        self.name = name
        self.description = description
        self.scopes = scopes
        self.tokenExpiration = tokenExpiration
        self.neverExpires = neverExpires
        self.isSystemToken = isSystemToken
        self.groups = groups
        self.accessRules = accessRules
        self.allowedCidrs = allowedCidrs
    }

    enum CodingKeys: String, CodingKey {
        case name, groups, isSystemToken, tokenExpiration, description, scopes, accessRules, allowedCidrs
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        groups = try container.decodeIfPresent([String].self, forKey: .groups)
        isSystemToken = try container.decodeIfPresent(Bool.self, forKey: .isSystemToken)
        tokenExpiration = try container.decodeIfPresent(Int64.self, forKey: .tokenExpiration)
        neverExpires = try container.contains(.tokenExpiration) && container.decodeNil(forKey: .tokenExpiration)
        description = try container.decodeIfPresent(String.self, forKey: .description)
        scopes = try container.decodeIfPresent([String].self, forKey: .scopes)
        accessRules = try container.decodeIfPresent([AccessRuleInfo].self, forKey: .accessRules)
        allowedCidrs = try container.decodeIfPresent([String].self, forKey: .allowedCidrs)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(groups, forKey: .groups)
        try c.encodeIfPresent(isSystemToken, forKey: .isSystemToken)
        if neverExpires {
            try c.encodeNil(forKey: .tokenExpiration)
        } else {
            try c.encodeIfPresent(tokenExpiration, forKey: .tokenExpiration)
        }
        try c.encodeIfPresent(description, forKey: .description)
        try c.encodeIfPresent(scopes, forKey: .scopes)
        try c.encodeIfPresent(accessRules, forKey: .accessRules)
        try c.encodeIfPresent(allowedCidrs, forKey: .allowedCidrs)
    }
}

/// `PATCH /api-tokens/{tokenUUID}` (RFC 7396): an absent field is unchanged; `description: null`
/// (``Patch/clear``) clears it.
public struct TokenUpdateRequest: Encodable, Sendable {
    public var name: String?
    public var description: Patch<String> = .unchanged
    /// `active` or `inactive`.
    public var status: String?

    public init(name: String? = nil, description: Patch<String> = .unchanged, status: String? = nil) {
        self.name = name
        self.description = description
        self.status = status
    }

    enum CodingKeys: String, CodingKey { case name, description, status }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(name, forKey: .name)
        try description.encode(in: &c, forKey: .description)
        try c.encodeIfPresent(status, forKey: .status)
    }
}

/// `POST /api-tokens/{tokenUUID}/rotate`.
public struct TokenRotateRequest: Codable, Sendable {
    /// The old secret keeps working this long (0 to 86400; 0 or absent: stops at once).
    public var overlapSeconds: Int?

    public init(overlapSeconds: Int? = nil) {
        self.overlapSeconds = overlapSeconds
    }
}

/// One field of a merge-patch body (RFC 7396): left out, set, or `null`.
public enum Patch<Value: Encodable & Sendable>: Sendable {
    case unchanged
    case set(Value)
    case clear

    func encode<Key: CodingKey>(in container: inout KeyedEncodingContainer<Key>, forKey key: Key) throws {
        switch self {
        case .unchanged: break
        case .set(let value): try container.encode(value, forKey: key)
        case .clear: try container.encodeNil(forKey: key)
        }
    }
}

/// `{"message": …}`: the answer of deletions and other actions without a resource to show.
public struct Message: Codable, Sendable {
    public var message: String

    public init(message: String) {
        self.message = message
    }
}

/// An RFC 9457 problem as Tessera sends it (`message` repeats `detail` for LISA's clients).
public struct ProblemBody: Codable, Sendable {
    public struct FieldError: Codable, Sendable, Equatable {
        public var field: String
        public var message: String

        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }

    public var type: String
    public var title: String
    public var status: Int
    public var detail: String
    public var message: String
    /// Per-field messages of a 422.
    public var errors: [FieldError]?

    public init(type: String, title: String, status: Int, detail: String, errors: [FieldError]?) {
        self.type = type
        self.title = title
        self.status = status
        self.detail = detail
        self.message = detail
        self.errors = errors
    }
}

/// `POST /credentials/revoke`: strings that may be leaked tokens (at most 1,000).
public struct CredentialsReport: Codable, Sendable {
    public var credentials: [String]

    public init(credentials: [String]) {
        self.credentials = credentials
    }
}
