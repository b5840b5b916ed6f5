import Foundation
import JWTKit
import TesseraCore

/// OIDC JWT settings (DESIGN §7): `TESSERA_JWT_SECRET` (HS256), `TESSERA_JWT_JWKS_FILE`
/// (RS256/ES256 public keys), `TESSERA_JWT_ISSUER`, `TESSERA_JWT_AUDIENCE`,
/// `TESSERA_JWT_USERNAME_CLAIM` (default `preferred_username`, falling back to `sub`),
/// `TESSERA_OIDC_GROUPS_CLAIM` (default `groups`) and `TESSERA_OIDC_JIT` (default false): a JWT's
/// groups drive the memberships of orgs with a group mapping, as an SSO sign-in's do (DESIGN §12).
public struct JWTSettings: Sendable {
    public var secret: String?
    public var jwksFile: String?
    public var issuer: String?
    public var audience: String?
    public var usernameClaim: String
    public var groupsClaim = "groups"
    public var justInTime = false

    public init(
        secret: String? = nil, jwksFile: String? = nil, issuer: String? = nil, audience: String? = nil,
        usernameClaim: String = "preferred_username"
    ) {
        self.secret = secret
        self.jwksFile = jwksFile
        self.issuer = issuer
        self.audience = audience
        self.usernameClaim = usernameClaim
    }

    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Self {
        func value(_ key: String) -> String? { environment[key].flatMap { $0.isEmpty ? nil : $0 } }
        var settings = JWTSettings(
            secret: value("TESSERA_JWT_SECRET"), jwksFile: value("TESSERA_JWT_JWKS_FILE"),
            issuer: value("TESSERA_JWT_ISSUER"), audience: value("TESSERA_JWT_AUDIENCE"),
            usernameClaim: value("TESSERA_JWT_USERNAME_CLAIM") ?? "preferred_username")
        settings.groupsClaim = value("TESSERA_OIDC_GROUPS_CLAIM") ?? "groups"
        settings.justInTime = value("TESSERA_OIDC_JIT") == "true"
        return settings
    }

    public var isEnabled: Bool { secret != nil || jwksFile != nil }
}

public enum JWTConfigurationError: Error, CustomStringConvertible {
    case secretTooShort(Int)
    case unreadableJWKS(String)

    public var description: String {
        switch self {
        case .secretTooShort(let length):
            "TESSERA_JWT_SECRET must be at least 32 bytes for HS256 (it has \(length))"
        case .unreadableJWKS(let file):
            "TESSERA_JWT_JWKS_FILE \(file) cannot be read as a JWKS document"
        }
    }
}

/// Verifies a JWT's signature and standard claims and returns the username it names. It gives
/// identity only: role and groups come from the database.
package struct JWTAuthenticator: Sendable {
    let keys: JWTKeyCollection
    let settings: JWTSettings

    static func make(_ settings: JWTSettings) async throws -> JWTAuthenticator? {
        guard settings.isEnabled else { return nil }
        let keys = JWTKeyCollection()
        if let secret = settings.secret {
            // HS256 needs a key at least as long as its output; JWTKit asserts on shorter ones.
            guard secret.utf8.count >= 32 else { throw JWTConfigurationError.secretTooShort(secret.utf8.count) }
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        }
        if let file = settings.jwksFile {
            do {
                try await keys.add(jwksJSON: try String(contentsOfFile: file, encoding: .utf8))
            } catch {
                throw JWTConfigurationError.unreadableJWKS(file)
            }
        }
        return JWTAuthenticator(keys: keys, settings: settings)
    }

    /// The username a JWT names, and its groups claim when it has one.
    func authenticate(_ token: String) async throws -> (username: String, groups: [String]?) {
        // Not three dot-separated parts: not a JWT (and not a Tessera token either).
        guard token.utf8.count <= 16_384, token.split(separator: ".", omittingEmptySubsequences: false).count == 3
        else {
            throw Problem.invalidToken(.malformed)
        }
        let claims: Claims
        do {
            claims = try await keys.verify(token, as: Claims.self)
        } catch {
            throw Problem.invalidToken(.unknown)
        }
        if let issuer = settings.issuer, claims.strings["iss"] != issuer {
            throw Problem.invalidToken(.unknown)
        }
        if let audience = settings.audience {
            guard let claimed = claims.audience, claimed.value.contains(audience) else {
                throw Problem.invalidToken(.unknown)
            }
        }
        guard let username = claims.strings[settings.usernameClaim] ?? claims.strings["sub"],
            Validation.isValidUsername(username)
        else { throw Problem.invalidToken(.unknown) }
        return (username, claims.lists[settings.groupsClaim] ?? claims.strings[settings.groupsClaim].map { [$0] })
    }

    /// Every string claim, plus `exp`/`nbf`/`aud` checked by JWTKit's claim types.
    package struct Claims: JWTPayload {
        package var strings: [String: String] = [:]
        /// Every claim that is a list of strings (`groups`).
        package var lists: [String: [String]] = [:]
        package var expiration: ExpirationClaim?
        package var notBefore: NotBeforeClaim?
        package var audience: AudienceClaim?

        package init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: AnyCodingKey.self)
            for key in container.allKeys {
                if let value = try? container.decode(String.self, forKey: key) {
                    strings[key.stringValue] = value
                } else if let values = try? container.decode([String].self, forKey: key) {
                    lists[key.stringValue] = values
                }
            }
            expiration = try container.decodeIfPresent(ExpirationClaim.self, forKey: AnyCodingKey("exp"))
            notBefore = try container.decodeIfPresent(NotBeforeClaim.self, forKey: AnyCodingKey("nbf"))
            audience = try container.decodeIfPresent(AudienceClaim.self, forKey: AnyCodingKey("aud"))
        }

        package func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: AnyCodingKey.self)
            for (key, value) in strings { try container.encode(value, forKey: AnyCodingKey(key)) }
            for (key, values) in lists { try container.encode(values, forKey: AnyCodingKey(key)) }
            try container.encodeIfPresent(expiration, forKey: AnyCodingKey("exp"))
            try container.encodeIfPresent(notBefore, forKey: AnyCodingKey("nbf"))
            try container.encodeIfPresent(audience, forKey: AnyCodingKey("aud"))
        }

        /// A JWT without `exp` is refused: sessions must end.
        package func verify(using algorithm: some JWTAlgorithm) async throws {
            guard let expiration else {
                throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "exp missing")
            }
            try expiration.verifyNotExpired()
            try notBefore?.verifyNotBefore()
        }
    }
}
