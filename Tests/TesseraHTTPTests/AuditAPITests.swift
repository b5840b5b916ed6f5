import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// `GET /orgs/{org}/audit-events` (issue #4).
@Suite struct AuditAPITests {
    @Test func adminsReadTheTrailNewestFirstPagedAndFiltered() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            try await app.addMember("alice")
            let created = try await client.call(.post, "/api-tokens/alice", token: root, json: #"{"name": "a"}"#)
            let id = try #require(created.string("tokenUUID"))
            let secret = try #require(created.string("token"))
            _ = try await client.call(.patch, "/api-tokens/\(id)", token: root, json: #"{"status": "inactive"}"#)
            _ = try await client.call(.delete, "/api-tokens/\(id)", token: root)

            let all = try await client.call(.get, "/orgs/acme/audit-events", token: root)
            #expect(all.status == .ok)
            let events = all.json["events"] as? [[String: Any]] ?? []
            #expect(
                events.compactMap { $0["action"] as? String }
                    == ["token.deleted", "token.status_changed", "token.created", "org.bootstrapped"])
            #expect(events.first?["actor"] as? String == "root")
            #expect(!all.text.contains(secret) && !all.text.containsTokenSecret)

            let page1 = try await client.call(.get, "/orgs/acme/audit-events?limit=2", token: root)
            let cursor = try #require(page1.json["nextCursor"] as? String)
            let page2 = try await client.call(.get, "/orgs/acme/audit-events?limit=2&cursor=\(cursor)", token: root)
            #expect(
                (page2.json["events"] as? [[String: Any]])?.compactMap { $0["action"] as? String } == [
                    "token.created", "org.bootstrapped",
                ])
            #expect(page2.json["nextCursor"] == nil)

            let byToken = try await client.call(.get, "/orgs/acme/audit-events?token=\(id)", token: root)
            #expect((byToken.json["events"] as? [[String: Any]])?.count == 3)
            let byAction = try await client.call(.get, "/orgs/acme/audit-events?action=token.created", token: root)
            #expect((byAction.json["events"] as? [[String: Any]])?.count == 1)
            let future = Int(Date().timeIntervalSince1970) + 3600
            let none = try await client.call(.get, "/orgs/acme/audit-events?since=\(future)", token: root)
            #expect((none.json["events"] as? [[String: Any]])?.isEmpty == true)
            #expect(
                try await client.call(.get, "/orgs/acme/audit-events?token=nope", token: root).status == .badRequest)

            // Members may not read it.
            let jwt = try await TestApp.jwt("alice")
            #expect(try await client.call(.get, "/orgs/acme/audit-events", token: jwt).status == .forbidden)
        }
    }
}
