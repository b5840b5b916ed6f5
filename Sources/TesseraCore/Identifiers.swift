/// Validated names from DESIGN §2. The same patterns are CHECK constraints in `sql/0001_init.sql`;
/// validating here first lets callers get a clear message instead of a constraint violation.
public enum Validation {
    /// Organization slug: `[a-z0-9][a-z0-9-]{1,62}`.
    /// Free text (names, labels, groups, descriptions) holds no control characters: NUL cannot
    /// be stored in PostgreSQL text, and the others only ever hide things. Descriptions may keep
    /// line breaks and tabs.
    public static func isPlainText(_ text: String, multiline: Bool = false) -> Bool {
        text.unicodeScalars.allSatisfy { scalar in
            if multiline && (scalar == "\n" || scalar == "\r" || scalar == "\t") { return true }
            return scalar.value >= 0x20 && scalar.value != 0x7F
        }
    }

    public static func isValidSlug(_ slug: String) -> Bool {
        let bytes = Array(slug.utf8)
        guard (2...63).contains(bytes.count), isLowerAlnum(bytes[0]) else { return false }
        return bytes.dropFirst().allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    /// Username: 1–255 of `[A-Za-z0-9._@+-]`, starting with a letter or digit. Covers LISA usernames
    /// and e-mail style identities from an OIDC provider; no spaces or slashes, since it travels in paths.
    public static func isValidUsername(_ username: String) -> Bool {
        let bytes = Array(username.utf8)
        guard (1...255).contains(bytes.count), isAlnum(bytes[0]) else { return false }
        return bytes.allSatisfy { isAlnum($0) || "._@+-".utf8.contains($0) }
    }

    /// Scope name: `[a-z][a-z0-9_.:-]{0,63}`.
    public static func isValidScopeName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count), isLower(bytes[0]) else { return false }
        return bytes.allSatisfy { isLowerAlnum($0) || "_.:-".utf8.contains($0) }
    }

    private static func isLower(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) }
    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
    private static func isLowerAlnum(_ byte: UInt8) -> Bool { isLower(byte) || isDigit(byte) }
    private static func isAlnum(_ byte: UInt8) -> Bool {
        isLowerAlnum(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }
}

/// A member's role in an organization.
public enum MembershipRole: String, Sendable, Codable, CaseIterable {
    case admin
    case member
}

/// Token status (DESIGN §2). `revoked` is final.
public enum TokenStatus: String, Sendable, Codable, CaseIterable {
    case active
    case inactive
    case revoked
}

/// Scopes every organization starts with (DESIGN §2).
public struct BuiltInScope: Sendable {
    public let name: String
    public let description: String
    public let adminOnly: Bool
    public let implies: [String]

    public static let all: [BuiltInScope] = [
        .init(name: "tokens:read", description: "Read token metadata", adminOnly: false, implies: []),
        .init(
            name: "tokens:write", description: "Create, update and delete tokens", adminOnly: false,
            implies: ["tokens:read"]),
        .init(name: "org:read", description: "Read the organization and its members", adminOnly: false, implies: []),
        .init(
            name: "org:admin", description: "Administer the organization", adminOnly: true,
            implies: ["org:read", "tokens:read", "tokens:write"]),
        .init(
            name: "platform:admin", description: "Act as an admin in every organization (platform admins only)",
            adminOnly: true, implies: ["org:admin"]),
        .init(name: "api:read", description: "Read access to the organization's APIs", adminOnly: false, implies: []),
        .init(
            name: "api:write", description: "Write access to the organization's APIs", adminOnly: false,
            implies: ["api:read"]),
        .init(
            name: scimProvision, description: "Provision users and groups over SCIM 2.0 (organization tokens only)",
            adminOnly: true, implies: []),
    ]

    /// The scope of an IdP's SCIM token: the org's `/scim/v2/{org}/` and nothing else.
    public static let scimProvision = "scim:provision"

    /// The bootstrap token's scopes: every built-in scope a personal token may hold (all but
    /// `scim:provision`, which only organization tokens carry).
    public static var bootstrapScopes: [String] { all.map(\.name).filter { $0 != scimProvision } }

    /// Scopes a token gets when created without `scopes` (DESIGN §2).
    public static let defaultTokenScopes = ["tokens:read", "tokens:write", "api:read", "api:write"]
}
