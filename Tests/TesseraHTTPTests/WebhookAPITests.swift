import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TesseraBentoCloud
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraVerification
import TesseraWebhooks
import Testing

@testable import TesseraConsole

/// Webhooks, their outbox and the leak report (issue #16). Delivery to a real receiver is
/// `make webhooks` (e2e/webhooks_run.py); here: the API, what lands in the outbox and when.
@Suite struct WebhookAPITests {
    /// No delivery service (events stay in the outbox to be read), private targets allowed.
    static var configuration: ServerConfiguration {
        var configuration = ServerConfiguration(lookupTimeout: .seconds(10))
        configuration.webhooks.deliver = false
        configuration.webhooks.allowPrivateTargets = true
        return configuration
    }

    static let hook = #"{"url": "http://127.0.0.1:9/hook", "description": "CI alerts"}"#

    @Test func adminsManageWebhooksAndTheSecretShowsOnce() async throws {
        try await TestApp.run(configuration: Self.configuration) { app, client in
            let root = app.root.token.plaintext
            let created = try await client.call(.post, "/orgs/acme/webhooks", token: root, json: Self.hook)
            #expect(created.status == .created)
            let id = try #require(created.string("id"))
            let secret = try #require(created.string("secret"))
            #expect(secret.hasPrefix("whsec_"))
            #expect((created.json["events"] as? [String])?.count == WebhookEvent.names.count, "all events by default")

            let list = try await client.call(.get, "/orgs/acme/webhooks", token: root)
            #expect((list.json["webhooks"] as? [[String: Any]])?.count == 1)
            #expect(!list.text.contains(secret) && !list.text.contains("whsec_"))
            #expect(try await client.call(.get, "/orgs/acme/webhooks/\(id)", token: root).string("secret") == nil)

            let rotated = try await client.call(
                .patch, "/orgs/acme/webhooks/\(id)", token: root, json: #"{"rotateSecret": true}"#)
            #expect(rotated.status == .ok)
            #expect(rotated.string("secret").map { $0 != secret && $0.hasPrefix("whsec_") } == true)
            let paused = try await client.call(
                .patch, "/orgs/acme/webhooks/\(id)", token: root,
                json: #"{"active": false, "events": ["token.leaked"]}"#)
            #expect(paused.json["active"] as? Bool == false)
            #expect(paused.json["events"] as? [String] == ["token.leaked"])
            #expect(paused.string("secret") == nil)

            for bad in [
                #"{"url": "ftp://example.com/x"}"#, #"{"url": "http://127.0.0.1:9/", "events": ["token.eaten"]}"#,
                #"{"url": "http://127.0.0.1:9/", "events": []}"#,
                #"{"url": "http://127.0.0.1:9/", "secret": "hunter2"}"#,
            ] {
                let refused = try await client.call(.post, "/orgs/acme/webhooks", token: root, json: bad)
                #expect(refused.status == .unprocessableContent, "\(bad)")
                #expect(!refused.text.contains("hunter2"))
            }
            try await app.addMember("alice")
            let member = try await TestApp.jwt("alice")
            #expect(try await client.call(.get, "/orgs/acme/webhooks", token: member).status == .forbidden)
            #expect(
                try await client.call(.post, "/orgs/acme/webhooks", token: member, json: Self.hook).status == .forbidden
            )

            #expect(try await client.call(.delete, "/orgs/acme/webhooks/\(id)", token: root).status == .ok)
            #expect(try await client.call(.get, "/orgs/acme/webhooks/\(id)", token: root).status == .notFound)
            #expect(try await client.call(.get, "/orgs/acme/webhooks/nope", token: root).status == .notFound)
            let audit = try await client.call(.get, "/orgs/acme/audit-events?action=webhook.updated", token: root)
            #expect(!audit.text.contains("whsec_"))
        }
    }

    @Test func privateTargetsAreRefusedUnlessAllowed() async throws {
        try await TestApp.run { app, client in
            for url in [
                "http://127.0.0.1/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x",
                "http://192.168.0.9/",
            ] {
                let refused = try await client.call(
                    .post, "/orgs/acme/webhooks", token: app.root.token.plaintext, json: #"{"url": "\#(url)"}"#)
                #expect(refused.status == .unprocessableContent, "\(url)")
                #expect(refused.text.contains("TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS"))
            }
        }
        let policy = WebhookTargetPolicy(allowPrivate: false)
        #expect((try? policy.check("https://8.8.8.8/hook")) != nil)
        #expect((try? policy.check("https://100.64.0.1/hook")) == nil, "shared address space (CGNAT)")
        #expect((try? policy.check("http://user:pw@8.8.8.8/")) == nil, "no credentials in the URL")
    }

    /// The outbox row is part of the change's transaction: a change makes exactly its events,
    /// a refused change none, and no payload holds a secret.
    @Test func changesQueueTheirEventsAndRefusedChangesNone() async throws {
        try await TestApp.run(configuration: Self.configuration) { app, client in
            let root = app.root.token.plaintext
            #expect(
                try await client.call(.post, "/orgs/acme/webhooks", token: root, json: Self.hook).status == .created)
            try await app.addMember("alice")
            let personal = try await client.call(.post, "/api-tokens/alice", token: root, json: #"{"name": "laptop"}"#)
            let org = try await client.call(
                .post, "/api-tokens/ci", token: root, json: #"{"name": "ci", "isSystemToken": true}"#)
            let orgID = try #require(org.string("tokenUUID"))
            // Refused: alice already has her one personal token.
            #expect(
                try await client.call(.post, "/api-tokens/alice", token: root, json: #"{"name": "again"}"#).status
                    == .badRequest)
            #expect(try await client.call(.delete, "/api-tokens/\(orgID)", token: root).status == .ok)
            #expect(try await client.call(.delete, "/orgs/acme/members/alice", token: root).status == .ok)

            let events = try await app.store.withConnection { connection in
                try await connection.query(
                    "SELECT event, payload::text FROM webhook_deliveries ORDER BY created_at, event",
                    logger: app.store.logger
                ).collect().map { try $0.decode((String, String).self) }
            }
            #expect(
                events.map(\.0) == [
                    "token.created", "token.created", "token.revoked", "member.removed", "token.revoked",
                ]
                    || events.map(\.0).sorted() == [
                        "member.removed", "token.created", "token.created", "token.revoked", "token.revoked",
                    ])
            for (_, payload) in events {
                #expect(!payload.containsTokenSecret)
                #expect(!payload.contains("whsec_"))
            }
            let reasons = events.filter { $0.0 == "token.revoked" }.compactMap { payload -> String? in
                let json = try? JSONSerialization.jsonObject(with: Data(payload.1.utf8)) as? [String: Any]
                return (json?["data"] as? [String: Any])?["reason"] as? String
            }
            #expect(Set(reasons) == ["deleted_by_admin", "owner_left_org"])
            let first = try #require(
                events.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.1.utf8)) as? [String: Any] })
            #expect(first["type"] as? String == "token.created")
            let data = try #require(first["data"] as? [String: Any])
            #expect(data["organization"] as? String == "acme")
            #expect((data["actor"] as? [String: Any])?["username"] as? String == "root")
            #expect((data["token"] as? [String: Any])?["name"] as? String == "laptop")
            _ = personal

            let hooks = try await client.call(.get, "/orgs/acme/webhooks", token: root)
            let id = try #require((hooks.json["webhooks"] as? [[String: Any]])?.first?["id"] as? String)
            let log = try await client.call(.get, "/orgs/acme/webhooks/\(id)/deliveries?limit=2", token: root)
            let deliveries = try #require(log.json["deliveries"] as? [[String: Any]])
            #expect(deliveries.count == 2)
            #expect(deliveries.allSatisfy { $0["status"] as? String == "pending" && $0["attempts"] as? Int == 0 })
            let delivery = try #require(deliveries.first?["id"] as? String)
            #expect(
                try await client.call(.post, "/orgs/acme/webhooks/\(id)/deliveries/\(delivery)/redeliver", token: root)
                    .status
                    == .accepted)
            #expect(
                try await client.call(.post, "/orgs/acme/webhooks/\(id)/deliveries/\(UUID())/redeliver", token: root)
                    .status
                    == .notFound)
        }
    }

    /// A platform admin deleting a user removes them from every organization: each org's
    /// webhooks hear `member.removed` (and `token.revoked`, `owner_deleted`), as after an admin's
    /// removal, and its audit trail says so.
    @Test func deletingAUserTellsEachOrganization() async throws {
        try await TestApp.run(configuration: Self.configuration) { app, client in
            let root = app.root.token.plaintext
            #expect(
                try await client.call(.post, "/orgs/acme/webhooks", token: root, json: Self.hook).status == .created)
            try await app.addMember("bob")
            #expect(
                try await client.call(.post, "/api-tokens/bob", token: root, json: #"{"name": "laptop"}"#).status
                    == .created)
            #expect(try await client.call(.delete, "/users/bob", token: root).status == .ok)

            let events = try await app.store.withConnection { connection in
                try await connection.query(
                    "SELECT event, payload::text FROM webhook_deliveries ORDER BY created_at, event",
                    logger: app.store.logger
                ).collect().map { try $0.decode((String, String).self) }
            }
            #expect(events.map(\.0).sorted() == ["member.removed", "token.created", "token.revoked"])
            let removed = try #require(events.first { $0.0 == "member.removed" })
            let data = try #require(
                (try JSONSerialization.jsonObject(with: Data(removed.1.utf8)) as? [String: Any])?["data"]
                    as? [String: Any])
            #expect(data["member"] as? String == "bob")
            #expect(data["left"] as? Bool == false)
            let audit = try await client.call(.get, "/orgs/acme/audit-events?action=member.removed", token: root)
            #expect(audit.text.contains("user_deleted"), "\(audit.text)")
        }
    }

    /// GitHub's leak report: one answer for every input, only live tokens revoked (`leaked`),
    /// the org told, and a rate limit per address.
    @Test func leakReportsRevokeLiveTokensAndAnswerTheSameWhatever() async throws {
        var configuration = Self.configuration
        configuration.credentialsRevokePerMinute = 3
        try await TestApp.run(configuration: configuration) { app, client in
            let root = app.root.token.plaintext
            #expect(
                try await client.call(.post, "/orgs/acme/webhooks", token: root, json: Self.hook).status == .created)
            let live = try #require(
                try await client.call(
                    .post, "/api-tokens/ci", token: root, json: #"{"name": "ci", "isSystemToken": true}"#
                )
                .string("token"))
            let gone = try await client.call(
                .post, "/api-tokens/old", token: root, json: #"{"name": "old", "isSystemToken": true}"#)
            #expect(
                try await client.call(.delete, "/api-tokens/\(try #require(gone.string("tokenUUID")))", token: root)
                    .status == .ok)
            // Rotated away with an overlap: the old secret still verifies until it is reported.
            let overlapped = try await client.call(
                .post, "/api-tokens/deploy", token: root, json: #"{"name": "deploy", "isSystemToken": true}"#)
            let oldSecret = try #require(overlapped.string("token"))
            let rotated = try await client.call(
                .post, "/api-tokens/\(try #require(overlapped.string("tokenUUID")))/rotate", token: root,
                json: #"{"overlapSeconds": 3600}"#)
            #expect(rotated.status == .ok || rotated.status == .created)
            #expect(try await client.call(.get, "/auth/verify", token: oldSecret).status == .ok)
            let unknown = TokenSecret.generate(kind: .organization).plaintext
            func report(_ strings: [String]) async throws -> Reply {
                let body = try JSONSerialization.data(withJSONObject: ["credentials": strings])
                return try await client.call(.post, "/credentials/revoke", json: String(decoding: body, as: UTF8.self))
            }
            let mixed = try await report([live, try #require(gone.string("token")), unknown, "garbage", "", oldSecret])
            let garbage = try await report(["garbage"])
            #expect(mixed.status == .accepted && garbage.status == .accepted)
            #expect(mixed.text == garbage.text, "no oracle: the same answer whatever the list holds")
            #expect(!mixed.text.contains(live))

            let verify = try await client.call(.get, "/auth/verify", token: live)
            #expect(verify.status == .unauthorized, "a reported token stops at once on this replica")
            #expect(
                try await client.call(.get, "/auth/verify", token: oldSecret).status == .unauthorized,
                "its overlap ends too")
            let events = try await app.store.withConnection { connection in
                try await connection.query(
                    "SELECT event FROM webhook_deliveries ORDER BY created_at", logger: app.store.logger
                )
                .collect().map { try $0.decode(String.self) }
            }
            #expect(events.filter { $0 == "token.leaked" }.count == 2)
            let audit = try await client.call(.get, "/orgs/acme/audit-events?action=token.revoked", token: root)
            #expect(audit.text.contains("leaked"))

            #expect(try await report(Array(repeating: "x", count: 1001)).status == .unprocessableContent)
            let limited = try await report(["garbage"])
            #expect(limited.status == .tooManyRequests, "a fourth report within the minute")
            #expect(limited.headers[.retryAfter] != nil)
        }
    }
}

/// The console's Webhooks pages (issue #16): the secret shown once and never kept, pause, the
/// delivery log with Redeliver, and members kept out.
@Suite struct ConsoleWebhookTests {
    @Test func adminsAddPauseRotateAndRedeliverFromTheConsole() async throws {
        try await TestApp.run(configuration: WebhookAPITests.configuration) { app, client in
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let page = try await browser.get("/console/webhooks")
            #expect(page.status == .ok && page.text.contains("No webhooks yet"))
            let csrf = try #require(page.csrf)
            let added = try await browser.post(
                "/console/webhooks",
                [
                    ("csrf", csrf), ("url", "http://127.0.0.1:9/<hook>"), ("description", "<b>alerts</b>"),
                    ("events", "token.created"),
                    ("events", "token.leaked"),
                ])
            #expect(added.status == .ok)
            let secret = try #require(
                added.text.range(of: #"whsec_[A-Za-z0-9+/=]+"#, options: .regularExpression).map {
                    String(added.text[$0])
                })
            let sessions = try await app.store.client.values("SELECT data::text FROM console_sessions", as: String.self)
            #expect(sessions.allSatisfy { !$0.contains(secret) }, "the secret is never kept in a session")

            let list = try await browser.get("/console/webhooks")
            #expect(!list.text.contains("whsec_"))
            #expect(list.text.contains("&lt;b&gt;alerts&lt;/b&gt;") && !list.text.contains("<b>alerts</b>"))
            #expect(list.text.contains("token.created, token.leaked"))
            let id = try #require(
                list.text.range(of: #"/console/webhooks/[0-9a-f-]{36}"#, options: .regularExpression)
                    .map { String(list.text[$0].dropFirst("/console/webhooks/".count)) })

            let paused = try await browser.post(
                "/console/webhooks/\(id)/active", [("csrf", csrf), ("active", "false")])
            #expect(paused.status == .seeOther || paused.status == .found)
            #expect(try await browser.get("/console/webhooks").text.contains("paused"))
            let rotated = try await browser.post("/console/webhooks/\(id)/rotate", [("csrf", csrf)])
            #expect(rotated.text.contains("whsec_") && !rotated.text.contains(secret))

            // Paused webhooks get no events; resumed, an event, its delivery in the log, Redeliver.
            _ = try await browser.post("/console/webhooks/\(id)/active", [("csrf", csrf), ("active", "true")])
            _ = try await client.call(
                .post, "/api-tokens/ci", token: app.root.token.plaintext,
                json: #"{"name": "ci", "isSystemToken": true}"#)
            let log = try await browser.get("/console/webhooks/\(id)")
            #expect(log.text.contains("token.created") && log.text.contains("pending"))
            let delivery = try #require(
                log.text.range(of: #"deliveries/[0-9a-f-]{36}/redeliver"#, options: .regularExpression)
                    .map { String(log.text[$0].dropFirst("deliveries/".count).prefix(36)) })
            let redelivered = try await browser.post(
                "/console/webhooks/\(id)/deliveries/\(delivery)/redeliver", [("csrf", csrf)])
            #expect(redelivered.location == "/console/webhooks/\(id)")
            #expect(try await browser.post("/console/webhooks/\(id)/delete", [("csrf", "wrong")]).status == .forbidden)
            #expect(
                try await browser.post("/console/webhooks/\(id)/delete", [("csrf", csrf)]).location
                    == "/console/webhooks")
            #expect(try await browser.get("/console/webhooks").text.contains("No webhooks yet"))

            try await app.addMember("alice")
            let member = CookieBrowser(client)
            try await member.signIn(
                try #require(
                    try await client.call(
                        .post, "/api-tokens/alice", token: app.root.token.plaintext, json: #"{"name": "a"}"#
                    )
                    .string("token")))
            #expect(try await member.get("/console/webhooks").status == .forbidden)
        }
    }
}
