import Foundation
import JWTKit
import TesseraCore

/// A claim's value as the JWT carries it.
enum ClaimValue: Decodable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([ClaimValue])
    case object([String: ClaimValue])
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([ClaimValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: ClaimValue].self))
        }
    }

    /// What a condition pattern is matched against: a string as is, a boolean or a whole number
    /// as JSON writes it; nothing for arrays, objects and null.
    var text: String? {
        switch self {
        case .string(let value): value
        case .bool(let value): value ? "true" : "false"
        case .number(let value) where value.rounded() == value && abs(value) < 1e15: String(Int64(value))
        default: nil
        }
    }
}

/// A subject token's claims, all of them (conditions may name any claim). Its signature is
/// checked by JWTKit; the registered claims by ``SubjectToken/validate(issuer:audience:now:)``.
struct SubjectClaims: JWTPayload {
    var claims: [String: ClaimValue]

    init(from decoder: any Decoder) throws {
        claims = try [String: ClaimValue](from: decoder)
    }

    func encode(to encoder: any Encoder) throws {
        throw EncodingError.invalidValue(self, .init(codingPath: [], debugDescription: "subject claims are read only"))
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// An OIDC token presented for exchange: its header read before any key is chosen, its
/// signature checked with a published key of its issuer, its claims held to RFC 8725.
struct SubjectToken {
    /// RS256 and ES256 only: never `none`, never an HMAC (whose key would be the public key).
    static let algorithms: Set<String> = ["RS256", "ES256"]
    static let maxLength = 16 * 1024

    let raw: String
    let algorithm: String
    let kid: String
    /// `iss`, read before the signature is checked: only to find the policies to consider.
    let unverifiedIssuer: String

    /// Reads the header and the issuer; refuses what no key could ever verify.
    init(_ raw: String) throws(ExchangeRefusal) {
        guard raw.utf8.count <= Self.maxLength else { throw .grant("the subject token is too long") }
        let parts = raw.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Self.json(parts[0]), let payload = Self.json(parts[1]) else {
            throw .grant("the subject token is not a signed JWT")
        }
        guard let alg = header["alg"] as? String, Self.algorithms.contains(alg) else {
            throw .grant("the subject token must be signed with RS256 or ES256")
        }
        guard header["crit"] == nil else { throw .grant("the subject token has critical header parameters") }
        guard let kid = header["kid"] as? String, !kid.isEmpty, kid.count <= 256 else {
            throw .grant("the subject token's header has no kid")
        }
        guard let iss = payload["iss"] as? String, !iss.isEmpty else { throw .grant("the subject token has no iss") }
        self.raw = raw
        self.algorithm = alg
        self.kid = kid
        self.unverifiedIssuer = iss
    }

    static func json(_ part: Substring) -> [String: Any]? {
        var text = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        text += String(repeating: "=", count: (4 - text.count % 4) % 4)
        guard let data = Data(base64Encoded: text) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// The claims, once the signature verifies with `key` (whose type must fit the algorithm).
    func verified(with key: JWK, in collection: JWTKeyCollection) async throws(ExchangeRefusal) -> SubjectClaims {
        let fits =
            switch algorithm {
            case "RS256": key.keyType == .rsa
            default: key.keyType == .ecdsa && key.curve?.rawValue == "P-256"
            }
        guard fits, key.algorithm == nil || key.algorithm?.rawValue == algorithm else {
            throw .grant("the subject token's algorithm does not fit the issuer's key")
        }
        do {
            return try await collection.verify(raw, as: SubjectClaims.self)
        } catch {
            throw .grant("the subject token's signature does not verify")
        }
    }
}

extension SubjectClaims {
    /// RFC 8725 and DESIGN §13: `iss` exact, `aud` holding `audience` (checked per policy),
    /// `exp` ahead, `nbf`/`iat` not ahead beyond the skew, at most an hour from `iat` to `exp`,
    /// a `sub` and a `jti`.
    func validate(issuer: String, now: Date) throws(ExchangeRefusal) -> (subject: String, jti: String, expires: Date) {
        guard case .string(let iss) = claims["iss"], iss == issuer else {
            throw .grant("the subject token's iss is wrong")
        }
        guard case .number(let exp) = claims["exp"] else { throw .grant("the subject token has no exp") }
        guard case .number(let iat) = claims["iat"] else { throw .grant("the subject token has no iat") }
        let expires = Date(timeIntervalSince1970: exp)
        guard expires > now else { throw .grant("the subject token has expired") }
        guard Date(timeIntervalSince1970: iat) <= now.addingTimeInterval(FederationLimits.skew) else {
            throw .grant("the subject token was issued in the future")
        }
        if let nbf = claims["nbf"] {
            guard case .number(let value) = nbf,
                Date(timeIntervalSince1970: value) <= now.addingTimeInterval(FederationLimits.skew)
            else { throw .grant("the subject token is not valid yet") }
        }
        guard exp - iat <= FederationLimits.maxSubjectTokenLifetime, exp > iat else {
            throw .grant("the subject token lives longer than an hour")
        }
        guard case .string(let sub) = claims["sub"], (1...512).contains(sub.count) else {
            throw .grant("the subject token has no sub")
        }
        guard case .string(let jti) = claims["jti"], (1...255).contains(jti.count) else {
            throw .grant("the subject token has no jti")
        }
        return (sub, jti, expires)
    }

    /// Whether `aud` (a string or a list) holds `audience`.
    func hasAudience(_ audience: String) -> Bool {
        switch claims["aud"] {
        case .string(let value): value == audience
        case .array(let values): values.contains(.string(audience))
        default: false
        }
    }

    func text(_ claim: String) -> String? { claims[claim]?.text }
}
