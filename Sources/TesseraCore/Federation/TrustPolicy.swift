import Foundation

/// An org's trust in a CI system's OIDC tokens (DESIGN §13): a JWT from `issuer`, for
/// `audience`, whose claims match every condition, may be exchanged for an organization token
/// with (a subset of) `scopes`, living at most `maxLifetimeSeconds`.
public struct TrustPolicyRecord: Sendable, Equatable {
    public var id: UUID
    public var orgID: UUID
    public var name: String
    public var issuer: String
    public var audience: String
    public var conditions: TrustConditions
    public var scopes: [String]
    public var maxLifetimeSeconds: Int
    /// The service label (`username`) of the tokens it issues.
    public var label: String
    public var createdAt: Date
    public var updatedAt: Date
    public var createdBy: String

    public init(
        id: UUID, orgID: UUID, name: String, issuer: String, audience: String, conditions: TrustConditions,
        scopes: [String], maxLifetimeSeconds: Int, label: String, createdAt: Date, updatedAt: Date, createdBy: String
    ) {
        self.id = id
        self.orgID = orgID
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.conditions = conditions
        self.scopes = scopes
        self.maxLifetimeSeconds = maxLifetimeSeconds
        self.label = label
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.createdBy = createdBy
    }
}

/// Claim name → pattern; all must match. A pattern is the claim's text with `*` standing for any
/// run of characters (none included); everything else is literal and case-sensitive.
public struct TrustConditions: Sendable, Equatable {
    public var patterns: [String: String]

    public init(_ patterns: [String: String]) { self.patterns = patterns }

    /// Claims one of which a policy must pin down: who the workload is (`sub`), or which
    /// repository it runs for (GitHub's `repository`, GitLab's `project_path`).
    public static let identifyingClaims = ["sub", "repository", "project_path"]
    public static let maxConditions = 20
    public static let maxPatternLength = 512

    /// The shape rules: 1 to 20 conditions on claim names, patterns of 1 to 512 printable
    /// characters, and at least one identifying claim constrained by more than `*`.
    public func validate() throws(DomainError) {
        guard !patterns.isEmpty, patterns.count <= Self.maxConditions else {
            throw .invalidField("conditions", "must hold 1 to \(Self.maxConditions) claim patterns")
        }
        for (claim, pattern) in patterns {
            guard (1...64).contains(claim.count),
                claim.unicodeScalars.allSatisfy({
                    $0.isASCII && ($0.properties.isAlphabetic || "0123456789_.:-".unicodeScalars.contains($0))
                })
            else {
                throw .invalidField("conditions", "claim name \"\(claim.prefix(64))\" is not a claim name")
            }
            guard (1...Self.maxPatternLength).contains(pattern.count),
                !pattern.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
            else {
                throw .invalidField(
                    "conditions", "the pattern of \(claim) must be 1 to \(Self.maxPatternLength) characters on one line"
                )
            }
        }
        let pinned = Self.identifyingClaims.contains { claim in
            patterns[claim].map { $0.contains { $0 != "*" } } ?? false
        }
        guard pinned else {
            throw .invalid(
                "A trust policy must constrain sub, repository or project_path: otherwise every workload of the issuer would match"
            )
        }
    }

    /// Whether every pattern matches its claim; `claim` gives a claim's text, nil when absent.
    public func match(_ claim: (String) -> String?) -> Bool {
        patterns.allSatisfy { name, pattern in
            guard let value = claim(name) else { return false }
            return Self.glob(pattern, matches: value)
        }
    }

    /// `*` matches any run of characters, everything else itself (by Unicode scalar).
    public static func glob(_ pattern: String, matches value: String) -> Bool {
        let p = Array(pattern.unicodeScalars)
        let v = Array(value.unicodeScalars)
        var (pi, vi) = (0, 0)
        var star: Int? = nil
        var resume = 0
        while vi < v.count {
            if pi < p.count, p[pi] == "*" {
                star = pi
                resume = vi
                pi += 1
            } else if pi < p.count, p[pi] == v[vi] {
                pi += 1
                vi += 1
            } else if let s = star {
                pi = s + 1
                resume += 1
                vi = resume
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

/// The lifetimes of exchanged tokens.
public enum FederationLimits {
    public static let defaultLifetimeSeconds = 900
    public static let lifetimeSeconds = 60...3600
    /// The longest subject token accepted: `exp - iat` of at most an hour (DESIGN §13).
    public static let maxSubjectTokenLifetime: TimeInterval = 3600
    /// Clock skew allowed on `nbf` and `iat`.
    public static let skew: TimeInterval = 60
}

/// How a token came to be: made by a person or an admin, or exchanged under a trust policy.
public enum TokenSource: String, Sendable, Codable, CaseIterable {
    case direct
    case federation
}

/// The trust policy and the subject token a federation token was exchanged for.
public struct FederatedOrigin: Sendable, Equatable {
    public var trustPolicyID: UUID
    public var issuer: String
    public var subject: String
    public var jti: String

    public init(trustPolicyID: UUID, issuer: String, subject: String, jti: String) {
        self.trustPolicyID = trustPolicyID
        self.issuer = issuer
        self.subject = subject
        self.jti = jti
    }
}
