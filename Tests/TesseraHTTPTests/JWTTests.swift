import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import TesseraBentoCloud
import TesseraHTTP
import Testing

@testable import TesseraConsole

/// OIDC JWTs: identity from the token, role from the database (DESIGN §3).
@Suite struct JWTTests {
    struct Claims: JWTPayload {
        var exp = ExpirationClaim(value: Date().addingTimeInterval(3600))
        var sub: String?
        var preferred_username: String?
        var email: String?
        var iss: String?
        var aud: AudienceClaim?
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static func hs256(_ claims: Claims, secret: String = TestApp.jwtSecret) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(claims)
    }

    @Test func es256FromAJWKSFile() async throws {
        let key = ES256PrivateKey()
        let parameters = try #require(key.parameters)
        let jwks =
            #"{"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1", "x": "\#(parameters.x)", "y": "\#(parameters.y)"}]}"#
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID().uuidString).json")
        try jwks.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let signer = JWTKeyCollection()
        await signer.add(ecdsa: key, kid: "k1")
        let good = try await signer.sign(Claims(sub: "ivy", preferred_username: "ivy"), kid: "k1")
        let forged = try await Self.hs256(Claims(sub: "ivy", preferred_username: "ivy"))
        try await TestApp.run(jwt: .init(jwksFile: file.path)) { app, client in
            try await app.addMember("ivy")
            #expect(try await client.call(.get, "/api-tokens", token: good).status == .ok)
            #expect(try await client.call(.get, "/api-tokens", token: forged).status == .unauthorized)
        }
    }

    @Test func issuerAudienceAndUsernameClaim() async throws {
        let settings = JWTSettings(
            secret: TestApp.jwtSecret, issuer: "https://idp.example", audience: "tessera", usernameClaim: "email")
        let good = try await Self.hs256(
            Claims(sub: "x-1", email: "jo@example.com", iss: "https://idp.example", aud: "tessera"))
        let wrongIssuer = try await Self.hs256(
            Claims(sub: "x-1", email: "jo@example.com", iss: "https://evil", aud: "tessera"))
        let wrongAudience = try await Self.hs256(
            Claims(sub: "x-1", email: "jo@example.com", iss: "https://idp.example", aud: "other"))
        let expired = try await Self.hs256(
            Claims(
                exp: .init(value: Date().addingTimeInterval(-60)), email: "jo@example.com", iss: "https://idp.example",
                aud: "tessera"))
        let wrongKey = try await Self.hs256(
            Claims(email: "jo@example.com", iss: "https://idp.example", aud: "tessera"),
            secret: String(repeating: "k", count: 40))
        try await TestApp.run(jwt: settings) { app, client in
            try await app.addMember("jo@example.com")
            #expect(try await client.call(.get, "/api-tokens", token: good).status == .ok)
            for bad in [wrongIssuer, wrongAudience, expired, wrongKey] {
                let reply = try await client.call(.get, "/api-tokens", token: bad)
                #expect(reply.status == .unauthorized)
                #expect(reply.headers[.wwwAuthenticate]?.contains("invalid_token") == true)
            }
            // A valid JWT of someone who is not a user gets 401; of a user in no org, 400.
            let stranger = try await Self.hs256(
                Claims(email: "nobody@example.com", iss: "https://idp.example", aud: "tessera"))
            #expect(try await client.call(.get, "/api-tokens", token: stranger).status == .unauthorized)
        }
    }

    @Test func jwtUsersPickTheirOrganization() async throws {
        try await TestApp.run { app, client in
            _ = try await app.store.bootstrap(organization: "globex", admin: "gadmin")
            try await app.addMember("kim")
            try await app.addMember("kim", org: "globex")
            let jwt = try await TestApp.jwt("kim")
            let ambiguous = try await client.call(.get, "/api-tokens", token: jwt)
            #expect(ambiguous.status == .badRequest)
            #expect(ambiguous.string("detail")?.contains("X-Tessera-Org") == true)
            let picked = try await client.call(
                .get, "/api-tokens", token: jwt, headers: [HTTPField.Name("X-Tessera-Org")!: "globex"])
            #expect(picked.status == .ok)
            #expect(picked.tokens.allSatisfy { $0["organization"] as? String == "globex" })
            #expect(try await client.call(.get, "/orgs/acme/api-tokens", token: jwt).status == .ok)
        }
    }
}
