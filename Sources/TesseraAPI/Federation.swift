/// A trust policy (DESIGN §13): who may exchange an OIDC token for an organization token.
public struct TrustPolicyInfo: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var issuer: String
    public var audience: String
    public var conditions: [String: String]
    public var scopes: [String]
    public var maxLifetimeSeconds: Int
    public var label: String
    public var createdDate: Int64
    public var updatedDate: Int64
    public var createdBy: String
    /// The policy's live (unexpired, unrevoked) tokens: what deleting it revokes.
    public var liveTokens: Int

    public init(
        id: String, name: String, issuer: String, audience: String, conditions: [String: String], scopes: [String],
        maxLifetimeSeconds: Int, label: String, createdDate: Int64, updatedDate: Int64, createdBy: String,
        liveTokens: Int
    ) {
        self.id = id
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.conditions = conditions
        self.scopes = scopes
        self.maxLifetimeSeconds = maxLifetimeSeconds
        self.label = label
        self.createdDate = createdDate
        self.updatedDate = updatedDate
        self.createdBy = createdBy
        self.liveTokens = liveTokens
    }
}

/// `GET /orgs/{org}/trust-policies`.
public struct TrustPolicyList: Codable, Sendable {
    public var trustPolicies: [TrustPolicyInfo]

    public init(trustPolicies: [TrustPolicyInfo]) { self.trustPolicies = trustPolicies }
}

/// `POST /orgs/{org}/trust-policies`.
public struct TrustPolicyCreateRequest: Codable, Sendable {
    public var name: String
    public var issuer: String
    public var audience: String
    public var conditions: [String: String]
    public var scopes: [String]
    public var maxLifetimeSeconds: Int?
    public var label: String?

    public init(
        name: String, issuer: String, audience: String, conditions: [String: String], scopes: [String],
        maxLifetimeSeconds: Int? = nil, label: String? = nil
    ) {
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.conditions = conditions
        self.scopes = scopes
        self.maxLifetimeSeconds = maxLifetimeSeconds
        self.label = label
    }
}

/// `PATCH /orgs/{org}/trust-policies/{id}`: absent fields are unchanged; the result is checked
/// as a whole, as a create is.
public struct TrustPolicyUpdateRequest: Codable, Sendable {
    public var name: String?
    public var issuer: String?
    public var audience: String?
    public var conditions: [String: String]?
    public var scopes: [String]?
    public var maxLifetimeSeconds: Int?
    public var label: String?

    public init(
        name: String? = nil, issuer: String? = nil, audience: String? = nil, conditions: [String: String]? = nil,
        scopes: [String]? = nil, maxLifetimeSeconds: Int? = nil, label: String? = nil
    ) {
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.conditions = conditions
        self.scopes = scopes
        self.maxLifetimeSeconds = maxLifetimeSeconds
        self.label = label
    }
}

/// `DELETE /orgs/{org}/trust-policies/{id}`.
public struct TrustPolicyDeleted: Codable, Sendable {
    public var message: String
    public var revokedTokens: Int

    public init(message: String, revokedTokens: Int) {
        self.message = message
        self.revokedTokens = revokedTokens
    }
}

/// The answer of `POST /oauth/token` (RFC 8693 §2.2.1).
public struct TokenExchangeResponse: Codable, Sendable {
    public var accessToken: String
    public var issuedTokenType: String
    public var tokenType: String
    public var expiresIn: Int
    public var scope: String

    public init(accessToken: String, expiresIn: Int, scope: String) {
        self.accessToken = accessToken
        self.issuedTokenType = "urn:ietf:params:oauth:token-type:access_token"
        self.tokenType = "Bearer"
        self.expiresIn = expiresIn
        self.scope = scope
    }

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case issuedTokenType = "issued_token_type"
        case tokenType = "token_type"
        case expiresIn = "expires_in"
        case scope
    }
}

/// An OAuth error (RFC 6749 §5.2): what `/oauth/token` answers with status 400.
public struct OAuthErrorBody: Codable, Sendable {
    public var error: String
    public var errorDescription: String?

    public init(error: String, errorDescription: String?) {
        self.error = error
        self.errorDescription = errorDescription
    }

    enum CodingKeys: String, CodingKey {
        case error
        case errorDescription = "error_description"
    }
}
