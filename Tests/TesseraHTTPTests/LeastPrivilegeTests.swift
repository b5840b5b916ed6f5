import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TesseraCore
import TesseraHTTP
import TesseraTestSupport
import TesseraVerification
import Testing

/// Access rules, address limits and usage (issue #23, DESIGN §14) through the API and
/// `/auth/verify`, with the headers Traefik, nginx and Envoy send. The gateways themselves are in
/// `make e2e`.
@Suite struct LeastPrivilegeTests {
    static let rules = #"""
        {"name": "iris", "isSystemToken": true, "scopes": ["api:read"],
         "accessRules": [{"method": "get", "path": "/deployments/iris/**"},
                         {"method": "POST", "path": "//deployments/iris/*/restart/"},
                         {"method": "*", "path": "/metrics", "host": "Api.Example.com"}]}
        """#

    static func verify(
        _ client: some TestClientProtocol, _ token: String, _ headers: [(String, String)], uri: String = "/auth/verify"
    )
        async throws -> Reply
    {
        var fields = HTTPFields()
        fields[.authorization] = "Bearer \(token)"
        for (name, value) in headers { fields[HTTPField.Name(name)!] = value }
        return try await client.execute(uri: uri, method: .get, headers: fields) {
            Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body))
        }
    }

    @Test func rulesAreNormalisedShownAndNeverChange() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let created = try await client.call(.post, "/api-tokens/deployer", token: root, json: Self.rules)
            #expect(created.status == .created, "\(created.text)")
            let rules = created.json["accessRules"] as? [[String: String]]
            #expect(rules?[0] == ["method": "GET", "path": "/deployments/iris/**"])
            #expect(rules?[1] == ["method": "POST", "path": "/deployments/iris/*/restart"])
            #expect(rules?[2] == ["method": "*", "path": "/metrics", "host": "api.example.com"])
            let id = try #require(created.string("tokenUUID"))
            for body in [#"{"accessRules": []}"#, #"{"allowedCidrs": ["10.0.0.0/8"]}"#] {
                let patched = try await client.call(.patch, "/api-tokens/\(id)", token: root, json: body)
                #expect(patched.status == .badRequest, "\(body): \(patched.text)")
            }
            for (bad, field) in [
                (#"[{"method": "BREW", "path": "/x"}]"#, "accessRules"),
                (#"[{"method": "GET", "path": "x"}]"#, "accessRules"),
                (#"[{"method": "GET", "path": "/a%2Fb"}]"#, "accessRules"),
                (#"[{"method": "GET", "path": "/dep*"}]"#, "accessRules"),
            ] {
                let refused = try await client.call(
                    .post, "/api-tokens/svc", token: root,
                    json: #"{"name": "x", "isSystemToken": true, "accessRules": \#(bad)}"#)
                #expect(refused.status == .unprocessableContent, "\(bad): \(refused.text)")
                #expect(refused.text.contains(field))
            }
            for bad in [#"["10.1.2.3/8"]"#, #"["300.1.1.1"]"#, #"["2001:db8::/129"]"#, #"["nope"]"#] {
                let refused = try await client.call(
                    .post, "/api-tokens/svc", token: root,
                    json: #"{"name": "x", "isSystemToken": true, "allowedCidrs": \#(bad)}"#)
                #expect(refused.status == .unprocessableContent && refused.text.contains("allowedCidrs"), "\(bad)")
            }
        }
    }

    @Test func theGatewaysOriginalRequestMustMatchARule() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let created = try await client.call(.post, "/api-tokens/deployer", token: root, json: Self.rules)
            let token = try #require(created.string("token"))
            let allowed: [[(String, String)]] = [
                [("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "/deployments/iris/v1?x=1")],  // Traefik
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/iris")],  // nginx
                [("X-Original-Method", "GET"), ("X-Original-URI", "//deployments//iris/./v2/")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/%69ris/logs")],
                [("X-Original-Method", "HEAD"), ("X-Original-URI", "/deployments/iris/v1")],
                [("X-Original-Method", "POST"), ("X-Original-URI", "/deployments/iris/7/restart")],
                [
                    ("X-Forwarded-Method", "DELETE"), ("X-Forwarded-Uri", "/metrics"),
                    ("X-Forwarded-Host", "API.example.com"),
                ],
            ]
            for headers in allowed {
                let reply = try await Self.verify(client, token, headers)
                #expect(reply.status == .ok, "\(headers): \(reply.text)")
            }
            let envoy = try await Self.verify(client, token, [], uri: "/auth/verify/deployments/iris/v1?q=2")
            #expect(envoy.status == .ok, "Envoy's path after the prefix: \(envoy.text)")
            let refused: [[(String, String)]] = [
                [],  // no original request
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/iris/../x")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/iris/%2e%2e/x")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/iris%2Fx")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/iris./v1")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/IRIS/v1")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/iris\\..\\x")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/iris/%zz")],
                [
                    ("X-Original-Method", "GET"),
                    ("X-Original-URI", "/deployments/iris/" + String(repeating: "a/", count: 5000)),
                ],
                [("X-Original-Method", "DELETE"), ("X-Original-URI", "/deployments/iris/v1")],
                [("X-Original-Method", "get"), ("X-Original-URI", "/deployments/iris/v1")],  // case-sensitive
                [("X-Original-Method", "gEt"), ("X-Original-URI", "/deployments/iris/v1")],
                [("X-Original-Method", "POST"), ("X-Original-URI", "/deployments/iris/restart")],
                [
                    ("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "/metrics"),
                    ("X-Forwarded-Host", "evil.example.com"),
                ],
                [("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "/metrics")],
                [("X-Original-Method", "GET"), ("X-Original-URI", "/deployments/\"iris\"/x")],
            ]
            for headers in refused {
                let reply = try await Self.verify(client, token, headers)
                #expect(reply.status == .forbidden, "\(headers.map { "\($0.0): \($0.1.prefix(60))" }): \(reply.status)")
                let challenge = reply.headers[.wwwAuthenticate] ?? ""
                #expect(challenge.contains("insufficient_scope"))
                #expect(JSONSerialization.isValidJSONObject(reply.json) && !reply.json.isEmpty, "a JSON problem body")
            }
            let named = try await Self.verify(
                client, token, [("X-Original-Method", "DELETE"), ("X-Original-URI", "/deployments/iris/v1")])
            #expect(named.string("detail")?.contains("DELETE /deployments/iris/v1") == true, "\(named.text)")
            let introspected = try await client.execute(
                uri: "/oauth/introspect", method: .post,
                headers: [.authorization: "Bearer \(root)", .contentType: "application/x-www-form-urlencoded"],
                body: .init(string: "token=\(token)")
            ) { Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body)) }
            #expect((introspected.json["access_rules"] as? [[String: String]])?.count == 3)
            // A token without rules is unaffected.
            let plain = try await Self.verify(client, root, [("X-Original-URI", "/anything/../at/all")])
            #expect(plain.status == .ok)
        }
    }

    @Test func addressLimitsHoldAtTheGatewayAndOnTheAPI() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let created = try await client.call(
                .post, "/api-tokens/office", token: root,
                json:
                    #"{"name": "office", "isSystemToken": true, "scopes": ["tokens:read"], "allowedCidrs": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]}"#
            )
            #expect(created.json["allowedCidrs"] as? [String] == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
            let token = try #require(created.string("token"))
            for address in ["10.1.2.3", "2001:db8::1", "192.0.2.7", "::ffff:10.9.9.9"] {
                #expect(try await Self.verify(client, token, [("X-Real-IP", address)]).status == .ok, "\(address)")
            }
            #expect(
                try await Self.verify(client, token, [("X-Forwarded-For", "10.0.0.1, 203.0.113.9")]).status == .ok)
            for address in ["192.168.1.1", "2001:db9::1", "192.0.2.8", "not-an-address"] {
                let refused = try await Self.verify(client, token, [("X-Real-IP", address)])
                #expect(refused.status == .unauthorized, "\(address)")
                #expect(refused.headers[.wwwAuthenticate]?.contains("address not allowed") == true)
            }
            // On Tessera's own API the peer counts (none here), not a header the client sets.
            let own = try await client.call(
                .get, "/api-tokens/self", token: token, headers: [HTTPField.Name("X-Real-IP")!: "10.1.2.3"])
            #expect(own.status == .unauthorized && own.text.contains("address not allowed"))
        }
    }

    @Test func usageIsCountedPerOutcomeAndFlushedInBatches() async throws {
        let configuration = ServerConfiguration(lastUsedFlushInterval: .milliseconds(100), lookupTimeout: .seconds(10))
        try await TestApp.run(configuration: configuration) { app, client in
            let root = app.root.token.plaintext
            let created = try await client.call(
                .post, "/api-tokens/counted", token: root,
                json:
                    #"{"name": "counted", "isSystemToken": true, "scopes": ["api:read"], "allowedCidrs": ["10.0.0.0/8"]}"#
            )
            let token = try #require(created.string("token"))
            let id = try #require(created.string("tokenUUID"))
            for address in ["10.0.0.1", "10.0.0.2", "10.0.0.1"] {
                #expect(try await Self.verify(client, token, [("X-Real-IP", address)]).status == .ok)
            }
            #expect(
                try await Self.verify(
                    client, token, [("X-Real-IP", "10.0.0.3"), ("X-Tessera-Required-Scopes", "api:write")]
                ).status == .forbidden)
            #expect(try await Self.verify(client, token, [("X-Real-IP", "172.16.0.1")]).status == .unauthorized)
            _ = try await client.call(.patch, "/api-tokens/\(id)", token: root, json: #"{"status": "inactive"}"#)
            #expect(try await Self.verify(client, token, [("X-Real-IP", "10.0.0.1")]).status == .unauthorized)
            var usage = Reply(status: .ok, headers: [:], text: "{}")
            _ = try await eventually(within: 5) {
                usage = try await client.call(.get, "/api-tokens/\(id)/usage?granularity=hour", token: root)
                let series = usage.json["series"] as? [[String: Any]] ?? []
                return series.contains(where: { ($0["inactive"] as? Int ?? 0) > 0 })
            }
            #expect(usage.status == .ok, "\(usage.text)")
            let series = usage.json["series"] as? [[String: Any]] ?? []
            #expect(series.count == 48 || series.count == 49, "48 hours by default")
            let sum = { (key: String) in series.reduce(0) { $0 + ($1[key] as? Int ?? 0) } }
            #expect(
                sum("valid") == 3 && sum("insufficientScope") == 1 && sum("address") == 1 && sum("inactive") == 1,
                "\(series.filter { ($0["valid"] as? Int ?? 0) > 0 })")
            let addresses = (usage.json["lastAddresses"] as? [[String: Any]] ?? []).compactMap {
                $0["address"] as? String
            }
            #expect(Set(addresses) == ["10.0.0.1", "10.0.0.2"], "\(addresses)")
            let daily = try await client.call(.get, "/api-tokens/\(id)/usage", token: root)
            #expect((daily.json["series"] as? [[String: Any]])?.count == 30)
            let org = try await client.call(.get, "/orgs/acme/usage", token: root)
            // The root token is counted too, once per call above (the polls included, as many as
            // the flush took): the list is busiest first, and the counted token has its six.
            let busiest = org.json["tokens"] as? [[String: Any]] ?? []
            let totals = busiest.map { $0["total"] as? Int ?? 0 }
            #expect(totals == totals.sorted(by: >), "\(org.text)")
            let counted = busiest.first { ($0["token"] as? [String: Any])?["tokenUUID"] as? String == id }
            #expect(counted?["total"] as? Int == 6, "\(org.text)")
            for bad in ["?granularity=minute", "?since=abc", "?since=0&granularity=hour"] {
                #expect(
                    try await client.call(.get, "/api-tokens/\(id)/usage\(bad)", token: root).status != .ok, "\(bad)")
            }
        }
    }

    @Test func theConsoleShowsRulesUsageAndAnOrgsUsage() async throws {
        let configuration = ServerConfiguration(lastUsedFlushInterval: .milliseconds(100), lookupTimeout: .seconds(10))
        try await TestApp.run(configuration: configuration) { app, client in
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let page = try await browser.get("/console/org-tokens")
            let csrf = try #require(page.csrf)
            let created = try await browser.post(
                "/console/org-tokens",
                [
                    ("csrf", csrf), ("label", "deployer"), ("name", "iris <deploy>"), ("scopes", "api:read"),
                    ("rule-method", "GET"), ("rule-path", "/deployments/iris/**"), ("rule-host", ""),
                    ("rule-method", "POST"), ("rule-path", ""), ("rule-host", ""),
                    ("cidrs", "10.0.0.0/8, 2001:db8::/32"),
                ])
            #expect(created.status == .ok && created.text.contains("tso_"), "\(created.status)")
            let token = try #require(
                created.text.range(of: #"tso_[0-9a-f]{128}"#, options: .regularExpression).map {
                    String(created.text[$0])
                })
            let listed = try await client.call(.get, "/api-tokens?search=iris", token: app.root.token.plaintext)
            let info = try #require(listed.tokens.first)
            #expect((info["accessRules"] as? [[String: String]])?.first?["path"] == "/deployments/iris/**")
            #expect(info["allowedCidrs"] as? [String] == ["10.0.0.0/8", "2001:db8::/32"])
            _ = try await Self.verify(
                client, token, [("X-Real-IP", "10.0.0.9"), ("X-Original-URI", "/deployments/iris/x")])
            _ = try await Self.verify(client, token, [("X-Real-IP", "8.8.8.8")])
            let id = try #require(info["tokenUUID"] as? String)
            // Last use and counts arrive in a flush (every 100 ms here), in separate statements:
            // wait for both rather than for a fixed time (a loaded CI machine took longer).
            var tokenPage: CookieBrowser.Page?
            _ = try await eventually(within: 5) {
                let current = try await browser.get("/console/tokens/\(id)")
                tokenPage = current
                return current.text.contains("1 valid") && current.text.contains("1 address refused")
            }
            let shown = try #require(tokenPage)
            #expect(shown.status == .ok)
            #expect(shown.text.contains("iris &lt;deploy&gt;") && !shown.text.contains("iris <deploy>"))
            #expect(shown.text.contains("GET /deployments/iris/**") && shown.text.contains("10.0.0.0/8, 2001:db8::/32"))
            #expect(shown.text.contains("<svg class=\"usage-chart\"") && shown.text.contains("bar-valid"))
            #expect(shown.text.contains("10.0.0.9"), "the last address")
            #expect(shown.text.contains("1 valid") && shown.text.contains("1 address refused"), "the chart's summary")
            let usage = try await browser.get("/console/usage")
            #expect(usage.status == .ok && usage.text.contains("/console/tokens/\(id)"))
            let policy = try await browser.get("/console/policy")
            #expect(!policy.text.contains("implies </span>") && !policy.text.contains(">implies <"), "no bare implies")
        }
    }

    @Test func bentoCloudsPerDeploymentTokensBecomeRules() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            _ = try await client.call(.patch, "/orgs/acme", token: root, json: #"{"personalTokenLimit": 5}"#)
            let created = try await client.call(
                .post, "/api/v1/api_tokens", token: root,
                json:
                    #"{"name": "iris only", "description": null, "scopes": ["api:read"], "expired_at": null, "deployments": ["iris"]}"#
            )
            #expect(created.status == .ok, "\(created.text)")
            let token = try #require(created.string("token"))
            #expect(
                try await Self.verify(
                    client, token, [("X-Original-URI", "/deployments/iris/predict"), ("X-Original-Method", "POST")]
                ).status == .ok)
            #expect(
                try await Self.verify(
                    client, token, [("X-Original-URI", "/deployments/rose/predict"), ("X-Original-Method", "POST")]
                ).status == .forbidden)
            let refused = try await client.call(
                .post, "/api/v1/api_tokens", token: root, json: #"{"name": "x", "deployments": ["../x"]}"#)
            #expect(refused.status == .unprocessableContent)
        }
    }

    /// A flush writes in statements of `rowsPerStatement` rows: every token's last use and count
    /// arrive, none twice.
    @Test func aFlushWritesInChunks() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            var ids: [UUID] = []
            for index in 0..<5 {
                let created = try await client.call(
                    .post, "/api-tokens/chunk-\(index)", token: root,
                    json: #"{"name": "chunk-\#(index)", "isSystemToken": true}"#)
                ids.append(try #require(created.string("tokenUUID").flatMap(UUID.init(uuidString:))))
            }
            let orgID = try #require(
                try await app.store.client.values("SELECT org_id FROM tokens WHERE id = \(ids[0])", as: UUID.self).first
            )
            let recorder = UsageRecorder(client: app.store.client, logger: app.store.logger, rowsPerStatement: 2)
            let now = Date()
            for (index, id) in ids.enumerated() {
                let token = VerifiedToken(
                    tokenID: id, kind: .organization, orgID: orgID, orgSlug: "acme", username: "chunk-\(index)",
                    ownerUserID: nil, role: nil, groups: [], platformAdmin: false, scopes: [], expiresAt: nil,
                    createdAt: now)
                recorder.record(token, at: now, address: "10.0.0.\(index + 1)")
            }
            await recorder.flush()
            let used = try await app.store.client.values(
                "SELECT count(*)::int FROM tokens WHERE id = ANY(\(ids)) AND last_used_at IS NOT NULL", as: Int32.self)
            let counted = try await app.store.client.values(
                "SELECT sum(valid)::int FROM token_usage WHERE token_id = ANY(\(ids))", as: Int32.self)
            let addresses = try await app.store.client.values(
                "SELECT count(*)::int FROM token_addresses WHERE token_id = ANY(\(ids))", as: Int32.self)
            #expect(used == [5] && counted == [5] && addresses == [5])
        }
    }

    /// Hourly rows older than 30 days become one daily row each; rows past the retention go.
    @Test func usageRollsUpIntoDaysAndIsPurged() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let created = try await client.call(
                .post, "/api-tokens/old", token: root, json: #"{"name": "old", "isSystemToken": true}"#)
            let id = try #require(created.string("tokenUUID"))
            _ = try await app.store.client.values(
                """
                INSERT INTO token_usage (token_id, org_id, granularity, bucket, valid, revoked)
                SELECT t.id, t.org_id, 'hour', h, 2, 1
                FROM tokens t, (VALUES (timestamptz '2026-10-01 03:00Z'), (timestamptz '2026-10-01 17:00Z'),
                                       (timestamptz '2025-06-01 00:00Z'), (now() - interval '1 hour')) AS v(h)
                WHERE t.id = \(UUID(uuidString: id)!)
                RETURNING 1
                """, as: Int32.self)
            let recorder = UsageRecorder(client: app.store.client, logger: app.store.logger, retentionDays: 365)
            await recorder.rollUp(now: Date(timeIntervalSince1970: 1_796_601_600))  // 2026-12-07
            let rows = try await app.store.client.values(
                """
                SELECT granularity || ' ' || to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') || ' ' || valid || ' ' || revoked
                FROM token_usage ORDER BY bucket
                """, as: String.self)
            #expect(rows.count == 2, "\(rows)")
            #expect(rows.first == "day 2026-10-01 00 4 2", "two hours became one day: \(rows)")
            #expect(rows.last?.hasPrefix("hour ") == true, "the recent hour stays")
        }
    }
}
