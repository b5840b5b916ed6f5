import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TesseraCore
import TesseraPostgres
import TesseraVerification
import Testing

/// `GET /api-tokens` with keyset pagination, search and filters (DESIGN §4.1, issue #4).
@Suite struct TokenListTests {
    /// 250 organization tokens named `svc-000`…`svc-249`, a few inactive.
    func seed(_ app: TestApp) async throws {
        try await app.store.client.query(
            """
            INSERT INTO tokens (org_id, kind, username, name, scopes, groups, secret_hash, token_prefix, status,
                                created_by, created_at, expires_at)
            SELECT o.id, 'organization', 'bot-' || (n % 7), 'svc-' || lpad(n::text, 3, '0'), '{api:read}',
                   CASE WHEN n % 10 = 0 THEN '{deployers}'::text[] ELSE '{}' END,
                   sha256(('seed' || n)::bytea), 'tso_' || lpad(to_hex(n), 8, '0'),
                   CASE WHEN n % 50 = 0 THEN 'inactive' ELSE 'active' END, 'root',
                   now() - (n || ' seconds')::interval, now() + interval '30 days'
            FROM organizations o, generate_series(0, 249) AS n WHERE o.slug = 'acme'
            """)
    }

    @Test func pagesCoverEverythingOnceInOrder() async throws {
        try await TestApp.run { app, client in
            try await seed(app)
            var names: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let uri = "/api-tokens?limit=60&kind=organization" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await client.call(.get, uri, token: app.root.token.plaintext)
                #expect(page.status == .ok)
                names += page.tokens.compactMap { $0["name"] as? String }
                cursor = page.json["nextCursor"] as? String
                pages += 1
            } while cursor != nil && pages < 10
            #expect(pages == 5)
            #expect(names == (0..<250).map { String(format: "svc-%03d", $0) })  // newest first

            let oldestFirst = try await client.call(
                .get, "/api-tokens?limit=3&sort=createdDate&kind=organization", token: app.root.token.plaintext)
            #expect(oldestFirst.tokens.compactMap { $0["name"] as? String } == ["svc-249", "svc-248", "svc-247"])
        }
    }

    @Test func searchAndFilters() async throws {
        try await TestApp.run { app, client in
            try await seed(app)
            let root = app.root.token.plaintext
            let byName = try await client.call(.get, "/api-tokens?search=svc-12", token: root)
            #expect(byName.tokens.count == 10)  // svc-120…svc-129
            let byGroup = try await client.call(.get, "/api-tokens?search=DEPLOY&limit=1000", token: root)
            #expect(byGroup.tokens.count == 25)
            let byUser = try await client.call(.get, "/api-tokens?search=bot-3&limit=1000", token: root)
            #expect(byUser.tokens.allSatisfy { $0["username"] as? String == "bot-3" })
            let inactive = try await client.call(.get, "/api-tokens?status=inactive", token: root)
            #expect(inactive.tokens.count == 5)
            let personal = try await client.call(.get, "/api-tokens?kind=personal", token: root)
            #expect(personal.tokens.compactMap { $0["name"] as? String } == ["bootstrap"])
            let wildcard = try await client.call(.get, "/api-tokens?search=%25", token: root)  // a literal %
            #expect(wildcard.status == .ok && wildcard.tokens.isEmpty)
            let injection = try await client.call(
                .get, "/api-tokens?search=%27%3B%20DROP%20TABLE%20tokens%3B--", token: root)
            #expect(injection.status == .ok && injection.tokens.isEmpty)
            #expect(try await client.call(.get, "/api-tokens?limit=1000", token: root).tokens.count == 251)

            // The search text follows renames (kept by a trigger, migration 0003).
            let target = try #require(byName.tokens.first?["tokenUUID"] as? String)
            let renamed = try await client.call(
                .patch, "/api-tokens/\(target)", token: root, json: #"{"name": "Nightly-Release"}"#)
            #expect(renamed.status == .ok)
            let found = try await client.call(.get, "/api-tokens?search=nightly-rel", token: root)
            #expect(found.tokens.compactMap { $0["tokenUUID"] as? String } == [target])
            #expect(try await client.call(.get, "/api-tokens?search=svc-12", token: root).tokens.count == 9)
        }
    }

    @Test(arguments: ["limit=0", "limit=1001", "limit=ten", "cursor=nope", "kind=robot", "status=gone", "sort=name"])
    func badParametersAre400(query: String) async throws {
        try await TestApp.run { app, client in
            let reply = try await client.call(.get, "/api-tokens?\(query)", token: app.root.token.plaintext)
            #expect(reply.status == .badRequest)
            #expect(reply.headers[.contentType] == "application/problem+json")
        }
    }
}
