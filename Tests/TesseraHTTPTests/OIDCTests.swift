import Foundation
import HTTPTypes
import HummingbirdTesting
import JWTKit
import Testing

@testable import TesseraConsole
@testable import TesseraHTTP

/// OpenID Connect sign-in, the parts the mock provider of the browser suite cannot check (it
/// ignores PKCE): the S256 challenge, state and nonce handling, and ID-token validation with
/// real JWTKit signatures (issuer, audience, expiry, nonce).
@Suite struct OIDCTests {
    static let settings = OIDCSettings(issuer: "https://idp.example", clientID: "tessera-console")

    @Test func pkceChallengeIsS256OfTheVerifier() {
        // RFC 7636 appendix B.
        #expect(
            OIDCPending.challenge(for: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
                == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        let pending = OIDCPending.make(now: Date())
        #expect(pending.verifier.count >= 43 && pending.verifier.count <= 128, "RFC 7636 §4.1 length")
        #expect(pending.state != pending.nonce && pending.state != pending.verifier)
        #expect(OIDCPending(cookieValue: pending.cookieValue) == pending)
        #expect(OIDCPending(cookieValue: "not-a-cookie") == nil)
    }

    struct IDToken: JWTPayload {
        var iss: String
        var aud: String
        var sub: String
        var preferred_username: String?
        var nonce: String?
        var exp: ExpirationClaim
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    func sign(_ payload: IDToken, with key: ES256PrivateKey) async throws -> String {
        let keys = await JWTKeyCollection().add(ecdsa: key, kid: "k1")
        return try await keys.sign(payload, kid: "k1")
    }

    @Test func idTokensAreCheckedForIssuerAudienceExpiryAndNonce() async throws {
        let key = ES256PrivateKey()
        let keys = await JWTKeyCollection().add(ecdsa: key.publicKey, kid: "k1")
        let client = OIDCClient(settings: Self.settings)
        let good = IDToken(
            iss: "https://idp.example", aud: "tessera-console", sub: "u-1", preferred_username: "alice", nonce: "n-1",
            exp: .init(value: Date().addingTimeInterval(300)))
        #expect(
            try await client.verify(idToken: try await sign(good, with: key), keys: keys, nonce: "n-1").username
                == "alice")

        func refused(_ token: IDToken, nonce: String = "n-1", signer: ES256PrivateKey? = nil) async throws -> OIDCError?
        {
            do {
                _ = try await client.verify(
                    idToken: try await sign(token, with: signer ?? key), keys: keys, nonce: nonce)
                return nil
            } catch let error as OIDCError {
                return error
            }
        }
        var other = good
        other.aud = "someone-else"
        #expect(try await refused(other) == .invalidIDToken("it was issued for another application"))
        other = good
        other.iss = "https://evil.example"
        #expect(try await refused(other) == .invalidIDToken("it was issued by someone else"))
        #expect(try await refused(good, nonce: "n-2") == .invalidIDToken("its nonce does not match this sign-in"))
        other = good
        other.nonce = nil
        #expect(try await refused(other) == .invalidIDToken("its nonce does not match this sign-in"))
        other = good
        other.exp = .init(value: Date().addingTimeInterval(-60))
        #expect(try await refused(other) == .invalidIDToken("its signature or expiry does not verify"))
        #expect(
            try await refused(good, signer: ES256PrivateKey())
                == .invalidIDToken("its signature or expiry does not verify"))
        other = good
        other.preferred_username = nil
        #expect(
            try await client.verify(idToken: try await sign(other, with: key), keys: keys, nonce: "n-1").username
                == "u-1",
            "falls back to sub")
    }

    /// A callback whose state does not match the browser's cookie (a forged or replayed link) is
    /// refused before anything is sent to the provider.
    @Test func aCallbackWithTheWrongStateIsRefused() async throws {
        var console = ConsoleSettings()
        console.oidc = OIDCSettings(issuer: "http://127.0.0.1:9", clientID: "tessera")
        try await TestApp.run(console: console) { _, client in
            let page = try await client.call(.get, "/console/sign-in")
            #expect(page.text.contains("Sign in with SSO"))
            let pending = OIDCPending.make(now: Date())
            let forged = try await client.call(
                .get, "/console/oidc/callback?code=abc&state=not-\(pending.state)",
                headers: [.cookie: "tessera_oidc=\(pending.cookieValue)"])
            #expect(forged.status == .badRequest && forged.text.contains("did not start here"))
            let noCookie = try await client.call(.get, "/console/oidc/callback?code=abc&state=\(pending.state)")
            #expect(noCookie.status == .badRequest && noCookie.text.contains("did not start here"))
            let denied = try await client.call(.get, "/console/oidc/callback?error=access_denied")
            #expect(denied.status == .badRequest && denied.text.contains("refused the sign-in: access_denied"))
            // The provider is unreachable: a readable page, not a 500.
            let start = try await CookieBrowser(client).get("/console/oidc/start")
            #expect(start.status == .badGateway && start.text.contains("could not be reached"))
        }
    }
}
