import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraVerification
import Testing

/// A clock the test moves forward by hand (cache TTL, expiry).
final class ManualClock: WallClock, @unchecked Sendable {
    private let lock = NIOLock()
    private var offset: TimeInterval = 0
    func advance(_ seconds: TimeInterval) { lock.withLock { offset += seconds } }
    func now() -> Date { Date().addingTimeInterval(lock.withLock { offset }) }
}

/// Polls `condition` until it holds or `seconds` pass (for changes that arrive by NOTIFY).
func eventually(within seconds: Double = 3, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    repeat {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(10))
    } while Date() < deadline
    return false
}

extension TestClientProtocol {
    func verify(_ token: String?, query: String = "", headers: HTTPFields = [:]) async throws -> Reply {
        try await call(.get, "/auth/verify" + query, token: token, headers: headers)
    }
}

extension Reply {
    var challenge: String { headers[.wwwAuthenticate] ?? "" }
}

/// `GET /auth/verify` (DESIGN §4.2, issue #5).
@Suite struct ForwardAuthTests {
    @Test func identityHeadersScopesAndEveryFailure() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let ci = try await client.call(
                .post, "/api-tokens/ci-bot", token: root,
                json: #"{"name": "ci", "isSystemToken": true, "scopes": ["api:write"]}"#)
            let secret = try #require(ci.string("token"))
            let id = try #require(ci.string("tokenUUID"))

            let ok = try await client.verify(secret)
            #expect(ok.status == .ok)
            #expect(ok.headers[HTTPField.Name("X-Tessera-Org")!] == "acme")
            #expect(ok.headers[HTTPField.Name("X-Tessera-Token-Id")!] == id)
            #expect(ok.headers[HTTPField.Name("X-Tessera-Kind")!] == "organization")
            #expect(ok.headers[HTTPField.Name("X-Tessera-Username")!] == "ci-bot")
            #expect(ok.headers[HTTPField.Name("X-Tessera-Scopes")!] == "api:read api:write")  // implication expanded

            // Also as LISA's bare Authorization and Api-Key, and under a path (Envoy ext_authz).
            #expect(try await client.call(.get, "/auth/verify", headers: [.authorization: secret]).status == .ok)
            #expect(
                try await client.call(
                    .post, "/auth/verify/some/upstream/path", headers: [HTTPField.Name("Api-Key")!: secret]
                ).status == .ok)

            // Required scopes, from the query (repeatable) and the header, honouring implication.
            #expect(try await client.verify(secret, query: "?scope=api:read").status == .ok)
            #expect(try await client.verify(secret, query: "?scope=api:read&scope=api:write").status == .ok)
            let lacking = try await client.verify(secret, query: "?scope=api:read&scope=tokens:write")
            #expect(lacking.status == .forbidden)
            #expect(lacking.challenge.contains(#"error="insufficient_scope""#))
            #expect(lacking.challenge.contains("tokens:write"))
            let byHeader = try await client.verify(
                secret, headers: [HTTPField.Name("X-Tessera-Required-Scopes")!: "api:read, org:admin"])
            #expect(byHeader.status == .forbidden)

            // Each failure has its own description; nothing but 401.
            let missing = try await client.verify(nil)
            #expect(missing.status == .unauthorized && missing.challenge == #"Bearer realm="tessera""#)
            for (presented, reason) in [
                ("tso_abc", "malformed"), (secret.dropLast() + (secret.last == "0" ? "1" : "0"), "malformed"),
                ("Bearer", "malformed"),
                (TokenSecret.generate(kind: .organization).plaintext, "unknown"),
            ] {
                let reply = try await client.verify(String(presented))
                #expect(reply.status == .unauthorized)
                #expect(reply.challenge.contains(#"error="invalid_token""#))
                #expect(reply.challenge.contains(VerificationFailure(rawValue: reason)!.description), "\(reason)")
                #expect(!reply.text.contains(String(presented)))
            }

            // A change made through the API is seen by the very next verification (write barrier).
            #expect(
                try await client.call(.patch, "/api-tokens/\(id)", token: root, json: #"{"status": "inactive"}"#).status
                    == .ok)
            #expect(try await client.verify(secret).challenge.contains("The token is inactive"))
            #expect(
                try await client.call(.patch, "/api-tokens/\(id)", token: root, json: #"{"status": "active"}"#).status
                    == .ok)
            #expect(try await client.verify(secret).status == .ok)

            // A change made behind the server's back (psql) arrives by NOTIFY.
            try await app.store.client.query(
                "UPDATE tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE id = \(UUID(uuidString: id)!)"
            )
            #expect(
                try await eventually { try await client.verify(secret).challenge.contains("The token has expired") })

            #expect(try await client.call(.delete, "/api-tokens/\(id)", token: root).status == .ok)
            #expect(try await client.verify(secret).challenge.contains("The token is unknown"))
        }
    }

    @Test func cascadesAndTheAuthorityRuleReachVerification() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            try await app.addMember("bob", role: .admin)
            try await app.addMember("carol")
            let bob = try #require(
                try await client.call(
                    .post, "/api-tokens/bob", token: root, json: #"{"name": "b", "scopes": ["org:admin", "api:read"]}"#
                ).string("token"))
            let carol = try #require(
                try await client.call(.post, "/api-tokens/carol", token: root, json: #"{"name": "c"}"#).string("token"))
            #expect(try await client.verify(bob, query: "?scope=org:admin").status == .ok)
            #expect(try await client.verify(carol).status == .ok)

            // Demoted: the token keeps working, without its admin power.
            #expect(
                try await client.call(.put, "/orgs/acme/members/bob", token: root, json: #"{"role": "member"}"#).status
                    == .ok)
            #expect(try await client.verify(bob, query: "?scope=org:admin").status == .forbidden)
            #expect(try await client.verify(bob, query: "?scope=api:read").status == .ok)

            // Removed: the personal token dies with the membership.
            #expect(try await client.call(.delete, "/orgs/acme/members/carol", token: root).status.kind == .successful)
            let gone = try await client.verify(carol)
            #expect(gone.status == .unauthorized && gone.challenge.contains("revoked"))

            // Defense in depth: a user disabled behind the API's back (no cascade ran) still fails.
            try await app.addMember("dave")
            let dave = try #require(
                try await client.call(.post, "/api-tokens/dave", token: root, json: #"{"name": "d"}"#).string("token"))
            #expect(try await client.verify(dave).status == .ok)
            try await app.store.client.query("UPDATE users SET status = 'disabled' WHERE username = 'dave'")
            #expect(
                try await eventually { try await client.verify(dave).challenge.contains("no longer an active member") })
        }
    }

    @Test func theTTLBoundsStalenessWhenANotificationIsLost() async throws {
        let clock = ManualClock()
        try await TestApp.run(clock: clock, listen: false) { app, client in
            let root = app.root.token.plaintext
            #expect(try await client.verify(root).status == .ok)
            // No listener: a change made in psql is not pushed, the cached answer stands...
            try await app.store.client.query("UPDATE tokens SET status = 'inactive' WHERE id = \(app.root.tokenUUID)")
            #expect(try await client.verify(root).status == .ok)
            // ...until the entry's TTL (30 s) runs out.
            clock.advance(31)
            #expect(try await client.verify(root).challenge.contains("inactive"))
        }
    }

    @Test func theListenerReconnectsAfterItsConnectionIsKilled() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: root, json: #"{"name": "ci", "isSystemToken": true}"#)
            let secret = try #require(ci.string("token"))
            let idText = try #require(ci.string("tokenUUID"))
            let id = try #require(UUID(uuidString: idText))
            #expect(try await client.verify(secret).status == .ok)  // cached now
            try await app.store.client.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = \(InvalidationListener.applicationName)"
            )
            try await Task.sleep(for: .milliseconds(300))
            try await app.store.client.query("UPDATE tokens SET status = 'inactive' WHERE id = \(id)")
            // Pushed by the reconnected listener (or dropped by its reconnect), never left for the TTL.
            #expect(try await eventually(within: 6) { try await client.verify(secret).challenge.contains("inactive") })
        }
    }

    @Test func noCacheMeansEveryAnswerIsFresh() async throws {
        try await TestApp.run(configuration: .init(cache: .off, lookupTimeout: .seconds(10)), listen: false) {
            app, client in
            let root = app.root.token.plaintext
            #expect(try await client.verify(root).status == .ok)
            try await app.store.client.query("UPDATE tokens SET status = 'inactive' WHERE id = \(app.root.tokenUUID)")
            #expect(try await client.verify(root).status == .unauthorized)
        }
    }
}

/// `POST /oauth/introspect` (RFC 7662).
@Suite struct IntrospectionTests {
    func introspect(_ client: some TestClientProtocol, _ token: String, as caller: String?) async throws -> Reply {
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        if let caller { headers[.authorization] = "Bearer \(caller)" }
        let body =
            "token=\(token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")&token_type_hint=access_token"
        return try await client.execute(
            uri: "/oauth/introspect", method: .post, headers: headers, body: ByteBuffer(string: body)
        ) {
            Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body))
        }
    }

    @Test func activeOnlyForLiveTokensOfTheCallersOrg() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: root,
                json: #"{"name": "ci", "isSystemToken": true, "scopes": ["api:read"]}"#)
            let secret = try #require(ci.string("token"))

            let active = try await introspect(client, secret, as: root)
            #expect(active.status == .ok)
            #expect(active.json["active"] as? Bool == true)
            #expect(active.string("scope") == "api:read")
            #expect(active.string("username") == "ci")
            #expect(active.string("org") == "acme")
            #expect(active.string("token_type") == "Bearer")
            #expect(active.json["exp"] is Int && active.json["iat"] is Int)
            #expect(active.string("token_id") == ci.string("tokenUUID"))

            let other = try await app.store.bootstrap(organization: "globex", admin: "gina")
            let inactive = #"{"active":false}"#
            for presented in ["", "garbage", TokenSecret.generate(kind: .personal).plaintext, other.token.plaintext] {
                let reply = try await introspect(client, presented, as: root)
                if presented.isEmpty {
                    #expect(reply.status == .badRequest)
                } else {
                    #expect(reply.status == .ok && reply.text == inactive, "\(presented.prefix(8))")
                }
            }
            // The other org's admin cannot see ours either.
            #expect(try await introspect(client, secret, as: other.token.plaintext).text == inactive)

            // Callers: authenticated, with tokens:read, form-encoded.
            #expect(try await introspect(client, secret, as: nil).status == .unauthorized)
            #expect(try await introspect(client, secret, as: secret).status == .forbidden)  // api:read only
            let json = try await client.call(.post, "/oauth/introspect", token: root, json: #"{"token": "x"}"#)
            #expect(json.status == .unsupportedMediaType)

            #expect(try await client.call(.delete, "/api-tokens/\(ci.string("tokenUUID")!)", token: root).status == .ok)
            #expect(try await introspect(client, secret, as: root).text == inactive)
        }
    }
}

/// `GET /metrics`.
@Suite struct MetricsTests {
    @Test func prometheusTextWithVerificationAndRequestMetrics() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            for _ in 0..<3 { _ = try await client.verify(root) }
            _ = try await client.verify("tsp_nope")
            let metrics = try await client.call(.get, "/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            for name in [
                #"tessera_verifications_total{outcome="ok"}"#, #"tessera_verifications_total{outcome="malformed"}"#,
                "tessera_verification_cache_hits_total", "tessera_verification_cache_misses_total",
                "tessera_verification_cache_entries", "tessera_invalidation_listener_connected",
                "tessera_db_operations_in_flight", "http_server_request_duration", "hb_requests",
            ] {
                #expect(metrics.text.contains(name), "\(name)")
            }
            #expect(!metrics.text.containsTokenSecret)
        }
    }
}
