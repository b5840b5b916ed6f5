import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import NIOCore
import TesseraCore
import TesseraHTTP
import TesseraTestSupport
import Testing

@testable import TesseraFederation

/// CI federation (issue #22) inside the test process: the trust policy API, `/oauth/token`'s
/// request rules, and a whole exchange against an issuer served on a real port (discovery and an
/// ES256 JWKS). The hostile cases against an issuer process are `make federation`.
@Suite struct FederationTests {
    static func policy(issuer: String, conditions: String = #"{"repository": "acme/app"}"#) -> String {
        #"{"name": "deploy", "issuer": "\#(issuer)", "audience": "tessera", "conditions": \#(conditions), "scopes": ["api:read"], "maxLifetimeSeconds": 120, "label": "ci-deploy"}"#
    }

    @Test func adminsManageTrustPoliciesAndTheRulesHold() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let path = "/orgs/acme/trust-policies"
            let created = try await client.call(
                .post, path, token: root, json: Self.policy(issuer: "http://127.0.0.1:9"))
            #expect(created.status == .created, "\(created.text)")
            let id = try #require(created.string("id"))
            #expect(created.json["liveTokens"] as? Int == 0)
            #expect(created.json["conditions"] as? [String: String] == ["repository": "acme/app"])
            for (body, status) in [
                (
                    Self.policy(issuer: "http://127.0.0.1:9", conditions: #"{"ref": "main"}"#),
                    HTTPResponse.Status.badRequest
                ),
                (Self.policy(issuer: "http://127.0.0.1:9", conditions: #"{"sub": "*"}"#), .badRequest),
                (Self.policy(issuer: "ftp://x", conditions: #"{"sub": "a"}"#), .unprocessableContent),
                (Self.policy(issuer: "http://127.0.0.1:9/?q=1", conditions: #"{"sub": "a"}"#), .unprocessableContent),
                (Self.policy(issuer: "http://127.0.0.1:9"), .conflict),
            ] {
                let refused = try await client.call(.post, path, token: root, json: body)
                #expect(refused.status == status, "\(body): \(refused.text)")
            }
            let lifetime = try await client.call(
                .patch, "\(path)/\(id)", token: root, json: #"{"maxLifetimeSeconds": 4000}"#)
            #expect(lifetime.status == .unprocessableContent)
            let patched = try await client.call(
                .patch, "\(path)/\(id)", token: root, json: #"{"audience": "tessera-acme", "label": "ci"}"#)
            #expect(patched.string("audience") == "tessera-acme" && patched.string("label") == "ci")
            #expect(patched.string("name") == "deploy")
            try await app.addMember("ada")
            let ada = try await client.call(.post, "/api-tokens/ada", token: root, json: #"{"name": "ada"}"#)
            let member = try #require(ada.string("token"))
            #expect(try await client.call(.get, path, token: member).status == .forbidden)
            #expect(try await client.call(.get, "\(path)/not-a-uuid", token: root).status == .notFound)
            let listed = try await client.call(.get, path, token: root)
            #expect((listed.json["trustPolicies"] as? [[String: Any]])?.count == 1)
            let deleted = try await client.call(.delete, "\(path)/\(id)", token: root)
            #expect(deleted.json["revokedTokens"] as? Int == 0)
            #expect(try await client.call(.get, "\(path)/\(id)", token: root).status == .notFound)
            let audit = try await client.call(.get, "/orgs/acme/audit-events", token: root)
            let actions = (audit.json["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions.filter { $0.hasPrefix("trust_policy.") }.count == 3, "\(actions)")
        }
    }

    @Test func theTokenEndpointAnswersInOAuthsShape() async throws {
        try await TestApp.run { _, client in
            func post(_ form: String, type: String = "application/x-www-form-urlencoded") async throws -> Reply {
                try await client.execute(
                    uri: "/oauth/token", method: .post, headers: [.contentType: type], body: ByteBuffer(string: form)
                ) { Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body)) }
            }
            let grant = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
            let cases: [(String, String)] = [
                ("", "invalid_request"),
                ("grant_type=password", "unsupported_grant_type"),
                ("\(grant)&subject_token=x", "invalid_request"),
                (
                    "\(grant)&subject_token=x&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token",
                    "invalid_request"
                ),
                (
                    "\(grant)&subject_token=x.y.z&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=acme",
                    "invalid_grant"
                ),
                ("\(grant)&\(grant)", "invalid_request"),
                ("%ZZ=1", "invalid_request"),
            ]
            for (form, error) in cases {
                let reply = try await post(form)
                #expect(reply.status == .badRequest, "\(form): \(reply.status)")
                #expect(reply.string("error") == error, "\(form): \(reply.text)")
                #expect(reply.headers[.cacheControl] == "no-store")
                #expect(reply.headers[.contentType] == "application/json")
            }
            #expect(try await post("{}", type: "application/json").string("error") == "invalid_request")
            let get = try await client.call(.get, "/oauth/token")
            #expect(get.status == .methodNotAllowed && get.headers[.allow] == "POST")
            #expect(get.string("error") == "invalid_request")
        }
    }

    struct Claims: JWTPayload {
        var iss: String
        var aud: String
        var sub: String
        var repository: String
        var iat: Int
        var exp: Int
        var jti: String
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// An issuer on a real port: discovery and a JWKS holding one ES256 key.
    static func withIssuer(_ body: @escaping @Sendable (String, JWTKeyCollection) async throws -> Void) async throws {
        let key = ES256PrivateKey()
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: key, kid: "k1")
        let parameters = try #require(key.parameters)
        let router = Router()
        let port = ManagedAtomicPort()
        router.get(".well-known/openid-configuration") { _, _ -> Response in
            let base = "http://127.0.0.1:\(port.value)"
            return Self.json(#"{"issuer": "\#(base)", "jwks_uri": "\#(base)/jwks"}"#)
        }
        router.get("jwks") { _, _ -> Response in
            Self.json(
                #"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig", "x": "\#(parameters.x)", "y": "\#(parameters.y)"}]}"#
            )
        }
        let issuer = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await issuer.test(.live) { client in
            port.value = client.port!
            try await body("http://127.0.0.1:\(client.port!)", keys)
        }
    }

    final class ManagedAtomicPort: @unchecked Sendable {
        var value = 0
    }

    static func json(_ text: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    @Test func anExchangeIssuesAnOrganizationTokenThatDiesWithItsPolicy() async throws {
        try await Self.withIssuer { issuer, keys in
            try await TestApp.run { app, client in
                let root = app.root.token.plaintext
                let created = try await client.call(
                    .post, "/orgs/acme/trust-policies", token: root, json: Self.policy(issuer: issuer))
                let policyID = try #require(created.string("id"))
                let now = Int(Date().timeIntervalSince1970)
                func jwt(repository: String = "acme/app") async throws -> String {
                    try await keys.sign(
                        Claims(
                            iss: issuer, aud: "tessera", sub: "repo:\(repository):ref:refs/heads/main",
                            repository: repository, iat: now, exp: now + 300, jti: UUID().uuidString),
                        kid: "k1")
                }
                func exchange(_ token: String) async throws -> Reply {
                    let form =
                        "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token=\(token)"
                        + "&subject_token_type=urn:ietf:params:oauth:token-type:id_token&audience=acme"
                    return try await client.execute(
                        uri: "/oauth/token", method: .post,
                        headers: [.contentType: "application/x-www-form-urlencoded"],
                        body: ByteBuffer(string: form)
                    ) { Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body)) }
                }
                let subject = try await jwt()
                let issued = try await exchange(subject)
                #expect(issued.status == .ok, "\(issued.text)")
                #expect(issued.json["expires_in"] as? Int == 120 && issued.string("scope") == "api:read")
                let token = try #require(issued.string("access_token"))
                #expect(token.hasPrefix("tso_"))
                #expect(try await exchange(subject).string("error") == "invalid_grant", "a replay")
                #expect(
                    try await exchange(try await jwt(repository: "acme/other")).string("error_description")
                        == "no trust policy matched")
                #expect(try await client.call(.get, "/auth/verify", token: token).status == .ok)
                let listed = try await client.call(.get, "/api-tokens?source=federation", token: root)
                #expect(listed.tokens.count == 1)
                #expect((listed.tokens.first?["federation"] as? [String: Any])?["trustPolicyId"] as? String == policyID)
                #expect(
                    try await client.call(.get, "/api-tokens", token: root).tokens.allSatisfy {
                        $0["source"] as? String == "direct"
                    })
                let id = try #require(listed.tokens.first?["tokenUUID"] as? String)
                let rotate = try await client.call(.post, "/api-tokens/\(id)/rotate", token: root, json: "{}")
                #expect(rotate.status == .conflict, "an exchanged token is not rotated")
                let deleted = try await client.call(.delete, "/orgs/acme/trust-policies/\(policyID)", token: root)
                #expect(deleted.json["revokedTokens"] as? Int == 1)
                #expect(try await client.call(.get, "/auth/verify", token: token).status == .unauthorized)
                let gone = try await client.call(.get, "/api-tokens/\(id)", token: root)
                #expect(gone.string("revokedReason") == "trust_policy_deleted")
            }
        }
    }

    @Test func adminsManageTrustPoliciesInTheConsole() async throws {
        try await TestApp.run { app, client in
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let page = try await browser.get("/console/trust-policies")
            #expect(page.status == .ok && page.text.contains("No trust policies yet"))
            let csrf = try #require(page.csrf)
            var form: [(String, String)] = [
                ("csrf", csrf), ("name", "deploy <main>"), ("issuer", "http://127.0.0.1:9"), ("audience", "tessera"),
                ("claim", "ref"), ("pattern", "refs/heads/main"), ("claim", ""), ("pattern", ""),
                ("scopes", "api:read"), ("lifetime", "10"), ("label", "ci"),
            ]
            let refused = try await browser.post("/console/trust-policies", form)
            #expect(refused.location == "/console/trust-policies")
            let message = try await browser.get("/console/trust-policies")
            #expect(message.text.contains("must constrain sub, repository or project_path"))
            form.append(("claim", "repository"))
            form.append(("pattern", "acme/*"))
            let created = try await browser.post("/console/trust-policies", form)
            let location = try #require(created.location)
            #expect(location.hasPrefix("/console/trust-policies/"))
            let shown = try await browser.get(location)
            #expect(shown.text.contains("deploy &lt;main&gt;") && !shown.text.contains("deploy <main>"))
            #expect(shown.text.contains("acme/*") && shown.text.contains("10 min"))
            #expect(shown.text.contains("No CI job has exchanged"))
            let listed = try await browser.get("/console/trust-policies")
            #expect(listed.text.contains(location))
            let deleted = try await browser.post("\(location)/delete", [("csrf", try #require(shown.csrf))])
            #expect(deleted.location == "/console/trust-policies")
            #expect(try await browser.get("/console/trust-policies").text.contains("The trust policy was deleted."))
            let tokens = try await browser.get("/console/org-tokens?source=federation")
            #expect(tokens.status == .ok && tokens.text.contains("Exchanged by CI"))
        }
    }

    /// Webhooks hear about policies and exchanged tokens; the purge forgets expired exchanged
    /// tokens and spent JWT ids, and nothing else.
    @Test func webhooksAndThePurge() async throws {
        try await Self.withIssuer { issuer, keys in
            try await TestApp.run(configuration: WebhookAPITests.configuration) { app, client in
                let root = app.root.token.plaintext
                let hook = try await client.call(.post, "/orgs/acme/webhooks", token: root, json: WebhookAPITests.hook)
                #expect(hook.status == .created)
                let created = try await client.call(
                    .post, "/orgs/acme/trust-policies", token: root, json: Self.policy(issuer: issuer))
                #expect(created.status == .created)
                let now = Int(Date().timeIntervalSince1970)
                let subject = try await keys.sign(
                    Claims(
                        iss: issuer, aud: "tessera", sub: "repo:acme/app:ref:refs/heads/main", repository: "acme/app",
                        iat: now, exp: now + 300, jti: UUID().uuidString), kid: "k1")
                let form =
                    "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token=\(subject)"
                    + "&subject_token_type=urn:ietf:params:oauth:token-type:jwt&audience=acme"
                let issued = try await client.execute(
                    uri: "/oauth/token", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                    body: ByteBuffer(string: form)
                ) { Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body)) }
                #expect(issued.status == .ok, "\(issued.text)")
                let events = try await app.store.client.values(
                    "SELECT event || ' ' || (payload -> 'data' -> 'token' ->> 'source') FROM webhook_deliveries WHERE event = 'token.created' UNION ALL SELECT event FROM webhook_deliveries WHERE event LIKE 'trust_policy.%'",
                    as: String.self)
                #expect(events.contains("token.created federation"), "\(events)")
                #expect(events.contains("trust_policy.created"), "\(events)")

                // Expired long ago: the purge takes it and its spent jti; a live direct token stays.
                _ = try await app.store.client.values(
                    """
                    WITH t AS (UPDATE tokens SET created_at = now() - interval '30 days',
                                                 expires_at = now() - interval '29 days'
                               WHERE source = 'federation' RETURNING 1),
                         j AS (UPDATE federation_jtis SET expires_at = now() - interval '1 hour' RETURNING 1)
                    SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM j)
                    """, as: Int64.self)
                let direct = try await app.store.client.values(
                    "SELECT count(*) FROM tokens WHERE source = 'direct'", as: Int64.self)
                var settings = FederationSettings()
                settings.retentionDays = 7
                let purged = await FederationMaintenance(store: app.store, settings: settings).purge()
                #expect(purged.tokens == 1 && purged.jtis == 1)
                #expect(
                    try await app.store.client.values(
                        "SELECT count(*) FROM tokens WHERE source = 'direct'", as: Int64.self)
                        == direct)
                #expect(
                    try await app.store.client.values("SELECT count(*) FROM federation_jtis", as: Int64.self) == [0])
            }
        }
    }
}
