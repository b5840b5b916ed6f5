import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TesseraCore
import TesseraPostgres
import TesseraVerification
import Testing

/// Orgs, members and users (DESIGN §4.2) and the cascades they trigger (§5).
@Suite struct AdminAPITests {
    @Test func platformAdminManagesOrganizations() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let created = try await client.call(
                .post, "/orgs", token: root, json: #"{"slug": "globex", "displayName": "Globex"}"#)
            #expect(created.status == .created)
            #expect(created.string("slug") == "globex")
            #expect((created.json["scopes"] as? [[String: Any]])?.count == BuiltInScope.all.count)
            #expect(
                try await client.call(.post, "/orgs", token: root, json: #"{"slug": "globex"}"#).status == .conflict)
            #expect(
                try await client.call(.post, "/orgs", token: root, json: #"{"slug": "Bad Slug"}"#).status
                    == .unprocessableContent)
            let all = try await client.call(.get, "/orgs", token: root)
            #expect((all.json["organizations"] as? [[String: Any]])?.count == 2)

            try await app.addMember("alice")
            let alice = try await client.call(.post, "/api-tokens/alice", token: root, json: #"{"name": "a"}"#)
            let aliceToken = try #require(alice.string("token"))
            #expect(
                try await client.call(.post, "/orgs", token: aliceToken, json: #"{"slug": "mine"}"#).status
                    == .forbidden)
            #expect(
                try await client.call(.post, "/users", token: aliceToken, json: #"{"username": "x"}"#).status
                    == .forbidden)
            let mine = try await client.call(.get, "/orgs", token: aliceToken)
            #expect((mine.json["organizations"] as? [[String: Any]])?.compactMap { $0["slug"] as? String } == ["acme"])
        }
    }

    @Test func policyPatchIsAMergePatchAndApplies() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let patched = try await client.call(
                .patch, "/orgs/acme", token: root,
                json:
                    #"{"defaultTokenLifetimeDays": 30, "maxTokenLifetimeDays": 30, "apiGroup": "api-users", "scopes": [{"name": "deploy:prod", "description": "Deploy", "adminOnly": true, "implies": []}]}"#
            )
            #expect(patched.status == .ok, "\(patched.text)")
            #expect(patched.json["maxTokenLifetimeDays"] as? Int == 30)
            #expect(patched.string("apiGroup") == "api-users")
            let tooLong = try await client.call(
                .post, "/api-tokens/svc", token: root,
                json:
                    #"{"name": "x", "isSystemToken": true, "tokenExpiration": \#(Int(Date().timeIntervalSince1970) + 40 * 86_400)}"#
            )
            #expect(tooLong.status == .badRequest)
            #expect(tooLong.string("detail")?.contains("30 days") == true)
            let deploy = try await client.call(
                .post, "/api-tokens/svc", token: root,
                json:
                    #"{"name": "deployer", "isSystemToken": true, "scopes": ["deploy:prod"], "tokenExpiration": \#(Int(Date().timeIntervalSince1970) + 86_400)}"#
            )
            #expect(deploy.status == .created)
            let cleared = try await client.call(.patch, "/orgs/acme", token: root, json: #"{"apiGroup": null}"#)
            #expect(cleared.json["apiGroup"] is NSNull)
            #expect(cleared.json["maxTokenLifetimeDays"] as? Int == 30)
            let bad = try await client.call(
                .patch, "/orgs/acme", token: root, json: #"{"defaultTokenLifetimeDays": "ninety"}"#)
            #expect(bad.status == .unprocessableContent)
            let inconsistent = try await client.call(
                .patch, "/orgs/acme", token: root, json: #"{"defaultTokenLifetimeDays": 60}"#)
            #expect(inconsistent.status == .badRequest)
            #expect(
                inconsistent.string("detail")
                    == "Invalid policy: defaultTokenLifetimeDays must not exceed maxTokenLifetimeDays")
        }
    }

    /// Creation checks scopes against the shared, cached catalog (issue #24): a scope added a
    /// moment ago is found, and one just made admin-only is refused to a member at once.
    @Test func creationSeesCatalogChangesAtOnce() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            try await app.addMember("cleo")
            let member = try await client.call(
                .post, "/api-tokens/cleo", token: root, json: #"{"name": "c", "scopes": ["tokens:write", "api:read"]}"#)
            let memberToken = try #require(member.string("token"))  // the catalog is cached now
            let added = try await client.call(
                .patch, "/orgs/acme", token: root,
                json:
                    #"{"personalTokenLimit": 3, "scopes": [{"name": "deploy:stage", "description": "Deploy", "adminOnly": false, "implies": []}]}"#
            )
            #expect(added.status == .ok, "\(added.text)")
            let staged = try await client.call(
                .post, "/api-tokens", token: memberToken, json: #"{"name": "s", "scopes": ["deploy:stage"]}"#)
            #expect(staged.status == .created, "a scope added a moment ago: \(staged.text)")
            let locked = try await client.call(
                .patch, "/orgs/acme", token: root,
                json:
                    #"{"scopes": [{"name": "deploy:stage", "description": "Deploy", "adminOnly": true, "implies": []}]}"#
            )
            #expect(locked.status == .ok)
            let refused = try await client.call(
                .post, "/api-tokens", token: memberToken, json: #"{"name": "t", "scopes": ["deploy:stage"]}"#)
            #expect(refused.status == .badRequest || refused.status == .forbidden, "\(refused.text)")
            #expect(refused.string("detail")?.contains("deploy:stage") == true, "\(refused.text)")
        }
    }

    /// An admin asking for a cap gets the cap: a larger default lifetime is lowered to it (#11).
    @Test func aCapAloneLowersTheDefaultLifetime() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let capped = try await client.call(
                .patch, "/orgs/acme", token: root, json: #"{"maxTokenLifetimeDays": 30}"#)
            #expect(capped.status == .ok, "\(capped.text)")
            #expect(capped.json["maxTokenLifetimeDays"] as? Int == 30)
            #expect(
                capped.json["defaultTokenLifetimeDays"] as? Int == 30, "the default of 90 days is lowered to the cap")
            // A token created without an expiration gets the (clamped) default, within the cap.
            let created = try await client.call(
                .post, "/api-tokens/svc", token: root, json: #"{"name": "ci", "isSystemToken": true}"#)
            #expect(created.status == .created, "\(created.text)")
            let expiration = try #require(created.json["tokenExpiration"] as? Int)
            #expect(abs(Double(expiration) - Date().addingTimeInterval(30 * 86_400).timeIntervalSince1970) < 120)
            // Raising the cap leaves the default alone; a default below the cap is kept too.
            let raised = try await client.call(
                .patch, "/orgs/acme", token: root, json: #"{"maxTokenLifetimeDays": 120}"#)
            #expect(raised.json["defaultTokenLifetimeDays"] as? Int == 30)
            let both = try await client.call(
                .patch, "/orgs/acme", token: root, json: #"{"maxTokenLifetimeDays": 60, "defaultTokenLifetimeDays": 7}"#
            )
            #expect(
                both.json["defaultTokenLifetimeDays"] as? Int == 7 && both.json["maxTokenLifetimeDays"] as? Int == 60)
            // Asking for both with the default above the cap is a contradiction: 400, nothing changed.
            let contradiction = try await client.call(
                .patch, "/orgs/acme", token: root,
                json: #"{"maxTokenLifetimeDays": 10, "defaultTokenLifetimeDays": 20}"#)
            #expect(contradiction.status == .badRequest)
            #expect(
                contradiction.string("detail")
                    == "Invalid policy: defaultTokenLifetimeDays must not exceed maxTokenLifetimeDays")
            let unchanged = try await client.call(.get, "/orgs/acme", token: root)
            #expect(
                unchanged.json["defaultTokenLifetimeDays"] as? Int == 7
                    && unchanged.json["maxTokenLifetimeDays"] as? Int == 60)
            // Clearing the cap keeps the default.
            let cleared = try await client.call(
                .patch, "/orgs/acme", token: root, json: #"{"maxTokenLifetimeDays": null}"#)
            #expect(
                cleared.json["maxTokenLifetimeDays"] is NSNull && cleared.json["defaultTokenLifetimeDays"] as? Int == 7)
        }
    }

    @Test func membersDemotionAndRemoval() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let added = try await client.call(
                .put, "/orgs/acme/members/erin", token: root, json: #"{"role": "admin", "groups": ["ops"]}"#)
            #expect(added.status == .ok)
            #expect(added.string("role") == "admin")
            let erin = try await client.call(.post, "/api-tokens/erin", token: root, json: #"{"name": "e"}"#)
            let erinToken = try #require(erin.string("token"))
            #expect(
                try await client.call(
                    .post, "/api-tokens/bot", token: erinToken, json: #"{"name": "b", "isSystemToken": true}"#
                ).status == .created)

            // Demoted: the same token loses admin power at once.
            #expect(
                try await client.call(.put, "/orgs/acme/members/erin", token: root, json: #"{"role": "member"}"#).status
                    == .ok)
            #expect(
                try await client.call(
                    .post, "/api-tokens/bot", token: erinToken, json: #"{"name": "b2", "isSystemToken": true}"#
                ).status == .unauthorized)
            let members = try await client.call(.get, "/orgs/acme/members", token: root)
            #expect(
                (members.json["members"] as? [[String: Any]])?.compactMap { $0["username"] as? String } == [
                    "erin", "root",
                ])

            // Removed: the personal token dies, the org token erin created lives on.
            let removed = try await client.call(.delete, "/orgs/acme/members/erin", token: root)
            #expect(removed.status == .ok)
            #expect(try await client.call(.get, "/api-tokens", token: erinToken).status == .unauthorized)
            #expect(try await client.call(.delete, "/orgs/acme/members/erin", token: root).status == .notFound)
            let reasons = try await app.store.client.query("SELECT revoked_reason FROM tokens WHERE username = 'erin'")
                .decode(String?.self)
            for try await reason in reasons { #expect(reason == "owner_left_org") }
            let actions = try await app.store.client.query("SELECT action FROM audit_events ORDER BY id").decode(
                String.self)
            var seen: [String] = []
            for try await action in actions { seen.append(action) }
            #expect(seen.contains("member.added") && seen.contains("member.removed") && seen.contains("token.revoked"))
        }
    }

    @Test func memberMayLeave() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("fay")
            let jwt = try await TestApp.jwt("fay")
            #expect(try await client.call(.delete, "/orgs/acme/members/root", token: jwt).status == .forbidden)
            #expect(try await client.call(.delete, "/orgs/acme/members/fay", token: jwt).status == .ok)
        }
    }

    @Test func disablingAUserKillsTheirTokensInEveryOrg() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            _ = try await client.call(.post, "/orgs", token: root, json: #"{"slug": "globex"}"#)
            var tokens: [String] = []
            for org in ["acme", "globex"] {
                #expect(
                    try await client.call(.put, "/orgs/\(org)/members/gil", token: root, json: #"{"role": "admin"}"#)
                        .status == .ok)
                let created = try await client.call(
                    .post, "/orgs/\(org)/api-tokens/gil", token: root, json: #"{"name": "g"}"#)
                #expect(created.status == .created, "\(created.text)")
                tokens.append(try #require(created.string("token")))
            }
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: tokens[0], json: #"{"name": "ci", "isSystemToken": true}"#)
            let ciToken = try #require(ci.string("token"))
            for token in tokens { #expect(try await client.call(.get, "/api-tokens", token: token).status == .ok) }
            let disabled = try await client.call(.patch, "/users/gil", token: root, json: #"{"status": "disabled"}"#)
            #expect(disabled.string("status") == "disabled")
            for token in tokens {
                #expect(try await client.call(.get, "/api-tokens", token: token).status == .unauthorized)
            }
            #expect(try await client.call(.get, "/api-tokens", token: ciToken).status == .ok)

            let deleted = try await client.call(.delete, "/users/gil", token: root)
            #expect(deleted.status == .ok)
            #expect(try await client.call(.get, "/users/gil", token: root).status == .notFound)
            let ciInfo = try await client.call(.get, "/api-tokens/\(try #require(ci.string("tokenUUID")))", token: root)
            #expect(ciInfo.string("createdBy") == "gil")
        }
    }

    @Test func usersAndOrgDeletion() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let user = try await client.call(.post, "/users", token: root, json: #"{"username": "hal"}"#)
            #expect(user.status == .created)
            #expect(
                try await client.call(.post, "/users", token: root, json: #"{"username": "hal"}"#).status == .conflict)
            #expect(try await client.call(.get, "/users/hal", token: root).string("status") == "active")
            _ = try await client.call(.post, "/orgs", token: root, json: #"{"slug": "doomed"}"#)
            _ = try await client.call(.put, "/orgs/doomed/members/hal", token: root, json: #"{}"#)
            let hal = try await client.call(.post, "/orgs/doomed/api-tokens/hal", token: root, json: #"{"name": "h"}"#)
            let halToken = try #require(hal.string("token"))
            #expect(try await client.call(.delete, "/orgs/doomed", token: root).status == .ok)
            #expect(try await client.call(.get, "/api-tokens", token: halToken).status == .unauthorized)
            #expect(try await client.call(.get, "/orgs/doomed", token: root).status == .notFound)
        }
    }
}
