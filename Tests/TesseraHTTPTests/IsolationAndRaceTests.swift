import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TesseraCore
import TesseraPostgres
import TesseraVerification
import Testing

/// Tenant isolation (issue #7): a caller of org B using org A's ids gets 404 (or 401/403),
/// never data, on every route.
@Suite struct TenantIsolationTests {
    @Test func orgBNeverSeesOrgA() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            // Org A: generated tokens and members.
            var ids: [String] = []
            var secrets: [String] = []
            for i in 0..<12 {
                let name = "a-\(i)-\(UUID().uuidString.prefix(8))"
                let created = try await client.call(
                    .post, "/api-tokens/svc-\(i)", token: root, json: #"{"name": "\#(name)", "isSystemToken": true}"#)
                ids.append(try #require(created.string("tokenUUID")))
                secrets.append(try #require(created.string("token")))
            }
            try await app.addMember("alice")
            // Org B: an admin with a personal token (not a platform admin).
            let other = try await app.store.bootstrap(organization: "globex", admin: "gina")
            try await app.addMember("gus", org: "globex", role: .admin)
            let gus = try #require(
                try await client.call(.post, "/api-tokens/gus", token: other.token.plaintext, json: #"{"name": "gus"}"#)
                    .string("token"))

            var probes: [(HTTPRequest.Method, String, String?)] = []
            for id in ids.prefix(4) {
                probes += [
                    (.get, "/api-tokens/\(id)", nil), (.patch, "/api-tokens/\(id)", #"{"name": "mine"}"#),
                    (.post, "/api-tokens/\(id)/rotate", "{}"), (.delete, "/api-tokens/\(id)", nil),
                    (.get, "/orgs/acme/api-tokens/\(id)", nil), (.get, "/orgs/globex/api-tokens/\(id)", nil),
                    (.delete, "/orgs/globex/api-tokens/\(id)", nil),
                ]
            }
            probes += [
                (.get, "/orgs/acme/api-tokens", nil), (.post, "/orgs/acme/api-tokens", #"{"name": "x"}"#),
                (.post, "/orgs/acme/api-tokens/svc", #"{"name": "x", "isSystemToken": true}"#),
                (.get, "/orgs/acme", nil), (.patch, "/orgs/acme", #"{"idleTimeoutDays": 1}"#),
                (.delete, "/orgs/acme", nil),
                (.get, "/orgs/acme/members", nil), (.put, "/orgs/acme/members/gus", #"{"role": "admin"}"#),
                (.delete, "/orgs/acme/members/alice", nil), (.get, "/orgs/acme/audit-events", nil),
                (.get, "/users/alice", nil), (.patch, "/users/alice", #"{"status": "disabled"}"#),
                (.delete, "/users/alice", nil),
                (.post, "/api-tokens/alice", #"{"name": "x"}"#),
            ]
            let before = try await BadInputTests.counts(app)
            for (method, path, body) in probes {
                let reply = try await client.call(method, path, token: gus, json: body)
                // 400 only where the answer is the same for any name (not a member of *this* org).
                let allowed = path == "/api-tokens/alice" ? [400] : [401, 403, 404]
                #expect(
                    allowed.contains(reply.status.code),
                    "\(method) \(path): \(reply.status.code) \(reply.text.prefix(200))")
                #expect(!reply.text.contains("acme"), "\(method) \(path) names org A")
                for id in ids { #expect(!reply.text.contains(id), "\(method) \(path) leaked an id of org A") }
                #expect(!reply.text.contains("a-0-"))
            }
            #expect(try await BadInputTests.counts(app) == before)

            // Lists and verification from B show nothing of A.
            let list = try await client.call(.get, "/api-tokens?limit=1000", token: gus)
            #expect(list.status == .ok)
            for id in ids { #expect(!list.text.contains(id)) }
            for secret in secrets.prefix(3) {
                let reply = try await client.execute(
                    uri: "/oauth/introspect", method: .post,
                    headers: [.authorization: "Bearer \(gus)", .contentType: "application/x-www-form-urlencoded"],
                    body: ByteBuffer(string: "token=\(secret)")
                ) { String(buffer: $0.body) }
                #expect(reply == #"{"active":false}"#)
            }
            // And A's tokens are all still there, untouched.
            for id in ids { #expect(try await client.call(.get, "/api-tokens/\(id)", token: root).status == .ok) }
        }
    }
}

/// Races (issue #7): concurrent writes that must not leave a broken state.
@Suite struct RaceTests {
    @Test func memberRemovalRacingTokenCreationNeverLeavesALiveTokenBehind() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            for round in 0..<20 {
                let username = "racer-\(round)"
                try await app.addMember(username)
                async let removal = try? client.call(.delete, "/orgs/acme/members/\(username)", token: root).status.code
                async let creation = try? client.call(
                    .post, "/api-tokens/\(username)", token: root, json: #"{"name": "n"}"#
                ).status.code
                let (removed, created) = await (removal, creation)
                #expect([200, 204].contains(removed ?? 0), "round \(round): remove \(String(describing: removed))")
                #expect(
                    [201, 400, 404].contains(created ?? 0), "round \(round): create \(String(describing: created))")
            }
            // The invariant, in SQL: no live personal token without a membership.
            let orphans = try await app.store.client.query(
                """
                SELECT count(*)::int FROM tokens t
                WHERE t.kind = 'personal' AND t.status <> 'revoked'
                  AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = t.org_id AND m.user_id = t.owner_user_id)
                """)
            for try await count in orphans.decode(Int.self) { #expect(count == 0) }
        }
    }

    @Test func deleteRacingUpdate() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            for round in 0..<20 {
                let created = try await client.call(
                    .post, "/api-tokens/svc", token: root, json: #"{"name": "r\#(round)", "isSystemToken": true}"#)
                let id = try #require(created.string("tokenUUID"))
                async let deletion = try? client.call(.delete, "/api-tokens/\(id)", token: root).status.code
                async let patch = try? client.call(
                    .patch, "/api-tokens/\(id)", token: root, json: #"{"name": "renamed", "status": "inactive"}"#
                ).status.code
                let (deleted, patched) = await (deletion, patch)
                #expect(deleted == 200, "round \(round)")
                #expect(patched == 200 || patched == 404, "round \(round): patch \(String(describing: patched))")
                #expect(try await client.call(.get, "/api-tokens/\(id)", token: root).status == .notFound)
            }
        }
    }
}
