import Crypto
import Foundation
import JWTKit
import NIOConcurrencyHelpers
import TesseraCore
import TesseraHTTP

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Console sign-in with OpenID Connect (DESIGN §8): `TESSERA_OIDC_ISSUER`,
/// `TESSERA_OIDC_CLIENT_ID`, `TESSERA_OIDC_CLIENT_SECRET`, and the claim naming the Tessera
/// username (`TESSERA_OIDC_USERNAME_CLAIM`, default `preferred_username`, then `sub`).
public struct OIDCSettings: Sendable {
    public var issuer: String
    public var clientID: String
    public var clientSecret: String?
    public var usernameClaim: String
    /// `TESSERA_PUBLIC_URL`: the console's public origin for the redirect URI (default: the
    /// request's own host, http on loopback, https elsewhere).
    public var publicURL: String?
    /// `TESSERA_OIDC_GROUPS_CLAIM`: the ID token's claim listing the person's groups (default `groups`).
    public var groupsClaim = "groups"
    /// `TESSERA_OIDC_JIT`: a sign-in in an org's mapping groups creates the membership (default off).
    public var justInTime = false

    public init(
        issuer: String, clientID: String, clientSecret: String? = nil, usernameClaim: String = "preferred_username",
        publicURL: String? = nil
    ) {
        self.issuer = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.usernameClaim = usernameClaim
        self.publicURL = publicURL
    }
}

/// What the browser carries between "Sign in with SSO" and the callback (an HttpOnly cookie on
/// `/console/oidc`, ten minutes): `state` against CSRF, `nonce` against ID-token replay, and the
/// PKCE verifier whose S256 challenge went to the provider.
struct OIDCPending: Codable, Sendable, Equatable {
    var state: String
    var nonce: String
    var verifier: String
    var createdAt: Date

    static func make(now: Date) -> OIDCPending {
        OIDCPending(state: randomURLSafe(32), nonce: randomURLSafe(32), verifier: randomURLSafe(32), createdAt: now)
    }

    /// RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))).
    static func challenge(for verifier: String) -> String {
        base64URL(Data(SHA256.hash(data: Data(verifier.utf8))))
    }

    var cookieValue: String { base64URL((try? JSONEncoder().encode(self)) ?? Data()) }

    init(state: String, nonce: String, verifier: String, createdAt: Date) {
        self.state = state
        self.nonce = nonce
        self.verifier = verifier
        self.createdAt = createdAt
    }

    init?(cookieValue: String) {
        var base64 = cookieValue.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard cookieValue.count < 2048, let data = Data(base64Encoded: base64),
            let pending = try? JSONDecoder().decode(OIDCPending.self, from: data)
        else { return nil }
        self = pending
    }
}

func randomURLSafe(_ byteCount: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return base64URL(Data((0..<byteCount).map { _ in UInt8.random(in: 0...255, using: &generator) }))
}

func base64URL(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// Why an OIDC sign-in was refused; each is shown on the sign-in page.
enum OIDCError: Error, Equatable, CustomStringConvertible {
    case providerUnreachable(String)
    case stateMismatch
    case expired
    case providerRefused(String)
    case invalidIDToken(String)

    var description: String {
        switch self {
        case .providerUnreachable(let what): "The identity provider could not be reached (\(what))."
        case .stateMismatch: "This sign-in did not start here, or was already used. Start again."
        case .expired: "This sign-in took too long. Start again."
        case .providerRefused(let reason): "The identity provider refused the sign-in: \(reason)."
        case .invalidIDToken(let reason): "The identity provider's answer was not acceptable: \(reason)."
        }
    }
}

/// The relying party: discovery, the authorization URL, the code exchange (with the PKCE
/// verifier), and the ID token verified with JWTKit against the provider's JWKS (issuer,
/// audience, expiry, nonce).
final class OIDCClient: Sendable {
    let settings: OIDCSettings
    struct Discovery: Decodable, Sendable {
        var issuer: String
        var authorization_endpoint: String
        var token_endpoint: String
        var jwks_uri: String
        var token_endpoint_auth_methods_supported: [String]?
    }
    private let cached = NIOLockedValueBox<(Discovery, JWTKeyCollection)?>(nil)

    init(settings: OIDCSettings) {
        self.settings = settings
    }

    /// Discovery and keys, fetched once (again after a failure).
    func provider() async throws -> (Discovery, JWTKeyCollection) {
        if let cached = cached.withLockedValue({ $0 }) { return cached }
        let discovery: Discovery = try await fetchJSON(settings.issuer + "/.well-known/openid-configuration")
        guard discovery.issuer == settings.issuer else {
            throw OIDCError.providerUnreachable("its discovery document names issuer \(discovery.issuer)")
        }
        let jwks: JWKS = try await fetchJSON(discovery.jwks_uri)
        let keys = try await JWTKeyCollection().add(jwks: jwks)
        cached.withLockedValue { $0 = (discovery, keys) }
        return (discovery, keys)
    }

    func authorizationURL(_ pending: OIDCPending, redirectURI: String) async throws -> String {
        let (discovery, _) = try await provider()
        var components = URLComponents(string: discovery.authorization_endpoint)
        let existing = components?.queryItems ?? []
        components?.queryItems =
            existing + [
                URLQueryItem(name: "response_type", value: "code"),
                URLQueryItem(name: "client_id", value: settings.clientID),
                URLQueryItem(name: "redirect_uri", value: redirectURI),
                URLQueryItem(name: "scope", value: "openid profile email"),
                URLQueryItem(name: "state", value: pending.state), URLQueryItem(name: "nonce", value: pending.nonce),
                URLQueryItem(name: "code_challenge", value: OIDCPending.challenge(for: pending.verifier)),
                URLQueryItem(name: "code_challenge_method", value: "S256"),
            ]
        guard let url = components?.string else { throw OIDCError.providerUnreachable("bad authorization endpoint") }
        return url
    }

    /// Exchanges the code and returns the verified username.
    func finish(code: String, pending: OIDCPending, redirectURI: String) async throws -> OIDCIdentity {
        let (discovery, keys) = try await provider()
        var request = URLRequest(url: try url(discovery.token_endpoint))
        request.httpMethod = "POST"
        request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        var form = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
            ("code_verifier", pending.verifier),
            ("client_id", settings.clientID),
        ]
        if let secret = settings.clientSecret {
            let methods = discovery.token_endpoint_auth_methods_supported ?? ["client_secret_basic"]
            if methods.contains("client_secret_basic") {
                let credential = Data("\(Self.formEncode(settings.clientID)):\(Self.formEncode(secret))".utf8)
                    .base64EncodedString()
                request.setValue("Basic \(credential)", forHTTPHeaderField: "Authorization")
            } else {
                form.append(("client_secret", secret))
            }
        }
        request.httpBody = Data(
            form.map { "\(Self.formEncode($0.0))=\(Self.formEncode($0.1))" }.joined(separator: "&").utf8)
        let (data, response) = try await send(request)
        struct TokenResponse: Decodable {
            var id_token: String?
            var error: String?
            var error_description: String?
        }
        let answer = try? JSONDecoder().decode(TokenResponse.self, from: data)
        guard (response as? HTTPURLResponse)?.statusCode == 200, let idToken = answer?.id_token else {
            throw OIDCError.providerRefused(answer?.error_description ?? answer?.error ?? "the code exchange failed")
        }
        return try await verify(idToken: idToken, keys: keys, nonce: pending.nonce)
    }

    /// Signature (JWKS), `exp`, `iss`, `aud` (our client id), `nonce`; returns the username claim.
    func verify(idToken: String, keys: JWTKeyCollection, nonce: String) async throws -> OIDCIdentity {
        let claims: JWTAuthenticator.Claims
        do {
            claims = try await keys.verify(idToken, as: JWTAuthenticator.Claims.self)
        } catch {
            throw OIDCError.invalidIDToken("its signature or expiry does not verify")
        }
        guard claims.strings["iss"] == settings.issuer else {
            throw OIDCError.invalidIDToken("it was issued by someone else")
        }
        guard let audience = claims.audience, audience.value.contains(settings.clientID) else {
            throw OIDCError.invalidIDToken("it was issued for another application")
        }
        guard let claimed = claims.strings["nonce"], constantTimeEquals(claimed, nonce) else {
            throw OIDCError.invalidIDToken("its nonce does not match this sign-in")
        }
        guard let username = claims.strings[settings.usernameClaim] ?? claims.strings["sub"],
            Validation.isValidUsername(username)
        else { throw OIDCError.invalidIDToken("it names no usable \(settings.usernameClaim)") }
        return OIDCIdentity(
            username: username,
            groups: claims.lists[settings.groupsClaim] ?? claims.strings[settings.groupsClaim].map { [$0] })
    }

    static func formEncode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? ""
    }

    private func url(_ text: String) throws -> URL {
        guard let url = URL(string: text), url.scheme == "https" || url.scheme == "http" else {
            throw OIDCError.providerUnreachable("bad URL \(text)")
        }
        return url
    }

    private func fetchJSON<T: Decodable>(_ address: String) async throws -> T {
        let (data, response) = try await send(URLRequest(url: try url(address)))
        guard (response as? HTTPURLResponse)?.statusCode == 200,
            let value = try? JSONDecoder().decode(T.self, from: data)
        else {
            throw OIDCError.providerUnreachable("\(address) did not answer as expected")
        }
        return value
    }

    private func send(_ request: URLRequest) async throws -> (Data, URLResponse) {
        var request = request
        request.timeoutInterval = 10
        do {
            return try await URLSession.shared.data(for: request)
        } catch {
            throw OIDCError.providerUnreachable(request.url?.host ?? "?")
        }
    }
}

/// Who an SSO sign-in says the person is, and their groups (nil: the ID token has no groups claim).
struct OIDCIdentity: Sendable, Equatable {
    var username: String
    var groups: [String]?
}
