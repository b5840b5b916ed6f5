import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TesseraCore
import Testing

/// PATCH and self (DESIGN §4.2).
@Suite struct TokenLifecycleTests {
    @Test func patchNameDescriptionAndStatus() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            try await app.addMember("alice")
            let created = try await client.call(
                .post, "/api-tokens/alice", token: root, json: #"{"name": "a", "description": "old"}"#)
            let id = try #require(created.string("tokenUUID"))
            let secret = try #require(created.string("token"))

            let renamed = try await client.call(
                .patch, "/api-tokens/\(id)", token: secret, json: #"{"name": "laptop", "description": null}"#)
            #expect(renamed.status == .ok)
            #expect(renamed.string("name") == "laptop")
            #expect(renamed.json["description"] is NSNull)

            // Inactive stops at once; reactivated works again (an admin does it).
            let inactive = try await client.call(
                .patch, "/api-tokens/\(id)", token: secret, json: #"{"status": "inactive"}"#)
            #expect(inactive.string("status") == "inactive")
            let refused = try await client.call(.get, "/api-tokens", token: secret)
            #expect(refused.status == .unauthorized)
            #expect(refused.string("detail") == "The token is inactive")
            #expect(
                try await client.call(.patch, "/api-tokens/\(id)", token: root, json: #"{"status": "active"}"#).status
                    == .ok)
            #expect(try await client.call(.get, "/api-tokens", token: secret).status == .ok)

            let scopes = try await client.call(
                .patch, "/api-tokens/\(id)", token: root, json: #"{"scopes": ["api:read"]}"#)
            #expect(scopes.status == .badRequest)
            #expect(scopes.string("detail")?.contains("create a new token") == true)
            #expect(
                try await client.call(.patch, "/api-tokens/\(id)", token: root, json: #"{"status": "revoked"}"#).status
                    == .unprocessableContent)
            #expect(
                try await client.call(.patch, "/api-tokens/\(id)", token: root, json: #"{"name": 3}"#).status
                    == .unprocessableContent)

            // Revoked is final.
            try await app.store.client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin' WHERE id = \(UUID(uuidString: id)!)"
            )
            let revived = try await client.call(
                .patch, "/api-tokens/\(id)", token: root, json: #"{"status": "active"}"#)
            #expect(revived.status == .conflict)
        }
    }

    @Test func membersCannotPatchOrganizationTokens() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            try await app.addMember("bob")
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: root, json: #"{"name": "ci", "isSystemToken": true}"#)
            let ciID = try #require(ci.string("tokenUUID"))
            let jwt = try await TestApp.jwt("bob")
            #expect(
                try await client.call(.patch, "/api-tokens/\(ciID)", token: jwt, json: #"{"name": "x"}"#).status
                    == .notFound)
            #expect(
                try await client.call(.patch, "/api-tokens/\(ciID)", token: root, json: #"{"name": "ci-2"}"#).status
                    == .ok)
        }
    }

    @Test func selfDescribesTheCallingToken() async throws {
        try await TestApp.run { app, client in
            let me = try await client.call(.get, "/api-tokens/self", token: app.root.token.plaintext)
            #expect(me.status == .ok)
            #expect(me.string("tokenUUID") == app.root.tokenUUID.uuidString.lowercased())
            #expect(me.json["token"] == nil)
            try await app.addMember("bob")
            let jwt = try await TestApp.jwt("bob")
            #expect(try await client.call(.get, "/api-tokens/self", token: jwt).status == .badRequest)
        }
    }
}

@Suite struct ExpirationPolicyTests {
    @Test func nonExpiringTokensOnlyWhenTheOrgAllowsThem() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let refused = try await client.call(
                .post, "/api-tokens/ci", token: root,
                json: #"{"name": "ci", "isSystemToken": true, "tokenExpiration": null}"#)
            #expect(refused.status == .badRequest)
            #expect(refused.string("detail") == "This organization does not allow tokens that never expire")
            #expect(
                try await client.call(.patch, "/orgs/acme", token: root, json: #"{"allowNonExpiringTokens": true}"#)
                    .status == .ok)
            let forever = try await client.call(
                .post, "/api-tokens/ci", token: root,
                json: #"{"name": "ci", "isSystemToken": true, "tokenExpiration": null}"#)
            #expect(forever.status == .created)
            #expect(forever.json["tokenExpiration"] is NSNull)
            #expect(forever.json["isExpired"] as? Bool == false)
            let secret = try #require(forever.string("token"))
            #expect(try await client.call(.get, "/api-tokens/self", token: secret).status == .ok)
            // A maximum lifetime wins over the permission.
            #expect(
                try await client.call(
                    .patch, "/orgs/acme", token: root,
                    json: #"{"defaultTokenLifetimeDays": 7, "maxTokenLifetimeDays": 7}"#
                ).status == .ok)
            let capped = try await client.call(
                .post, "/api-tokens/ci", token: root,
                json: #"{"name": "ci2", "isSystemToken": true, "tokenExpiration": null}"#)
            #expect(capped.status == .badRequest)
            #expect(capped.string("detail")?.contains("7 days") == true)
        }
    }
}

@Suite struct IdleAndLastUsedTests {
    struct Later: WallClock {
        let offset: TimeInterval
        func now() -> Date { Date().addingTimeInterval(offset) }
    }

    @Test func idleTokensStopVerifying() async throws {
        try await TestApp.run(clock: Later(offset: 31 * 86_400)) { app, client in
            let root = app.root.token.plaintext
            #expect(try await client.call(.get, "/api-tokens", token: root).status == .ok)  // no idle timeout yet
            try await app.store.client.query("UPDATE organizations SET idle_timeout_days = 30")
            let idle = try await client.call(.get, "/api-tokens", token: root)
            #expect(idle.status == .unauthorized)
            #expect(idle.string("detail")?.contains("idle timeout") == true)
            try await app.store.client.query("UPDATE organizations SET idle_timeout_days = 45")
            #expect(try await client.call(.get, "/api-tokens", token: root).status == .ok)
        }
    }

    @Test func lastUsedIsCoalescedAndFlushedOnShutdown() async throws {
        try await TestApp.run(
            afterShutdown: { app in
                let used = try await app.store.client.query(
                    "SELECT last_used_at IS NOT NULL, host(last_used_ip) FROM tokens WHERE id = \(app.root.tokenUUID)"
                ).decode((Bool, String?).self)
                for try await (recorded, _) in used { #expect(recorded) }
            }
        ) { app, client in
            for _ in 0..<20 {
                #expect(try await client.call(.get, "/api-tokens/self", token: app.root.token.plaintext).status == .ok)
            }
            // Nothing written per request: the flush interval (60 s) has not passed.
            let before = try await app.store.client.query("SELECT count(*) FROM tokens WHERE last_used_at IS NOT NULL")
                .decode(Int.self)
            for try await count in before { #expect(count == 0) }
        }
    }
}

@Suite struct RotationTests {
    @Test func rotateWithoutOverlapStopsTheOldSecretAtOnce() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: root,
                json: #"{"name": "ci", "isSystemToken": true, "description": "d"}"#)
            let oldID = try #require(ci.string("tokenUUID"))
            let oldSecret = try #require(ci.string("token"))
            let rotated = try await client.call(.post, "/api-tokens/\(oldID)/rotate", token: root)
            #expect(rotated.status == .created)
            let newSecret = try #require(rotated.string("token"))
            #expect(rotated.string("tokenUUID") != oldID)
            #expect(rotated.string("name") == "ci" && rotated.string("description") == "d")
            #expect(rotated.json["tokenExpiration"] as? Int == ci.json["tokenExpiration"] as? Int)
            let old = try await client.call(.get, "/api-tokens/self", token: oldSecret)
            #expect(old.status == .unauthorized)
            #expect(old.string("detail") == "The token has been revoked")
            #expect(try await client.call(.get, "/api-tokens/self", token: newSecret).status == .ok)
            let oldInfo = try await client.call(.get, "/api-tokens/\(oldID)", token: root)
            #expect(oldInfo.string("revokedReason") == "rotated")
        }
    }

    @Test func overlapKeepsTheOldSecretForAWhile() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            try await app.addMember("alice")
            let alice = try await client.call(.post, "/api-tokens/alice", token: root, json: #"{"name": "a"}"#)
            let id = try #require(alice.string("tokenUUID"))
            let oldSecret = try #require(alice.string("token"))
            let rotated = try await client.call(
                .post, "/api-tokens/\(id)/rotate", token: oldSecret, json: #"{"overlapSeconds": 3600}"#)
            #expect(rotated.status == .created)
            #expect(try await client.call(.get, "/api-tokens/self", token: oldSecret).status == .ok)
            #expect(
                try await client.call(.get, "/api-tokens/self", token: try #require(rotated.string("token"))).status
                    == .ok)
            let tooLong = try await client.call(
                .post, "/api-tokens/\(try #require(rotated.string("tokenUUID")))/rotate", token: root,
                json: #"{"overlapSeconds": 100000}"#)
            #expect(tooLong.status == .unprocessableContent)
        }
    }

    @Test func rotatingARotatedTokenRevokesTheFamily() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: root, json: #"{"name": "ci", "isSystemToken": true}"#)
            let firstID = try #require(ci.string("tokenUUID"))
            let second = try await client.call(
                .post, "/api-tokens/\(firstID)/rotate", token: root, json: #"{"overlapSeconds": 600}"#)
            let secondSecret = try #require(second.string("token"))
            let reuse = try await client.call(.post, "/api-tokens/\(firstID)/rotate", token: root)
            #expect(reuse.status == .conflict)
            #expect(reuse.string("detail")?.contains("family") == true)
            // Both the overlapping old secret and the new one are dead now.
            #expect(
                try await client.call(.get, "/api-tokens/self", token: try #require(ci.string("token"))).status
                    == .unauthorized)
            #expect(try await client.call(.get, "/api-tokens/self", token: secondSecret).status == .unauthorized)
            let audit = try await client.call(.get, "/orgs/acme/audit-events?action=token.rotation_reuse", token: root)
            #expect((audit.json["events"] as? [[String: Any]])?.count == 1)
        }
    }

    @Test func concurrentRotationsOneWins() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: root, json: #"{"name": "ci", "isSystemToken": true}"#)
            let id = try #require(ci.string("tokenUUID"))
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<2 {
                    group.addTask { try await client.call(.post, "/api-tokens/\(id)/rotate", token: root).status }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .created }.count == 1)
            #expect(statuses.filter { $0 == .conflict }.count == 1)
        }
    }
}
