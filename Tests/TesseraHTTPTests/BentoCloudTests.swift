import Foundation
import HTTPTypes
import HummingbirdTesting
import TesseraCore
import Testing

/// The BentoCloud API-token surface (issue #13) as the `bentoml` client reads it: exactly 200,
/// every required key, no null text, RFC 3339 dates, `X-YATAI-API-TOKEN` as the credential.
/// (The real client runs against a real server in `make bentoml`.)
@Suite struct BentoCloudTests {
    static let yatai = HTTPField.Name("X-YATAI-API-TOKEN")!

    func call(
        _ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ token: String,
        json: String? = nil
    )
        async throws -> Reply
    {
        try await client.call(method, uri, json: json, headers: [Self.yatai: token])
    }

    @Test func theClientsCallsAnswerWhatItParses() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("bob@example.com")
            let bob = try #require(
                try await client.call(
                    .post, "/api-tokens/bob@example.com", token: app.root.token.plaintext, json: #"{"name": "bob"}"#
                )
                .string("token"))
            _ = try await client.call(
                .patch, "/orgs/acme", token: app.root.token.plaintext, json: #"{"personalTokenLimit": 5}"#)

            let me = try await call(client, .get, "/api/v1/auth/current", bob)
            #expect(me.status == .ok)
            #expect(
                me.json as NSDictionary == [
                    "name": "bob@example.com", "email": "bob@example.com", "first_name": "", "last_name": "",
                ])
            let org = try await call(client, .get, "/api/v1/current_org", bob)
            #expect(org.status == .ok && org.string("name") == "acme" && org.string("resource_type") == "organization")
            #expect(org.json["deleted_at"] is NSNull && (org.json["labels"] as? [Any])?.isEmpty == true)
            #expect(UUID(uuidString: org.string("uid") ?? "") != nil)
            #expect(ISO8601DateFormatter().date(from: String((org.string("created_at") ?? "").prefix(19)) + "Z") != nil)

            // create, as `bentoml api-token create` sends it: all four keys, a naive local time.
            let expires = Date().addingTimeInterval(30 * 86_400)
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyyy-MM-dd HH:mm:ss.SSSSSS"
            let created = try await call(
                client, .post, "/api/v1/api_tokens", bob,
                json:
                    #"{"name": "ci laptop", "description": null, "scopes": ["api:read", "tokens:read"], "expired_at": "\#(formatter.string(from: expires))"}"#
            )
            #expect(created.status == .ok, "\(created.text)")
            let secret = try #require(created.string("token"))
            #expect(TokenSecret.isWellFormed(secret))
            for key in [
                "uid", "created_at", "updated_at", "deleted_at", "name", "resource_type", "labels", "description",
                "scopes", "user",
                "organization", "expired_at", "last_used_at", "is_expired", "is_api_token", "is_organization_token",
                "is_global_access",
            ] {
                #expect(created.json.keys.contains(key), "missing \(key)")
            }
            #expect(created.string("description") == "" && created.string("resource_type") == "api_token")
            let expiredAt = try #require(created.string("expired_at"))
            #expect(
                abs(
                    (ISO8601DateFormatter.withFractions.date(from: expiredAt) ?? .distantPast).timeIntervalSince(
                        expires)) < 2, "UTC")
            let uid = try #require(created.string("uid"))
            // null everywhere: the org's defaults, not "never".
            let plain = try await call(
                client, .post, "/api/v1/api_tokens", bob,
                json: #"{"name": "plain", "description": null, "scopes": null, "expired_at": null}"#)
            #expect(plain.status == .ok && !(plain.json["expired_at"] is NSNull), "\(plain.text)")

            // list: start/count/total/items, search with + for spaces, the new token first.
            let list = try await call(client, .get, "/api/v1/api_tokens?start=0&count=100&search=ci+laptop", bob)
            #expect(list.status == .ok && list.json["total"] as? Int == 1 && list.json["start"] as? Int == 0)
            #expect((list.json["items"] as? [[String: Any]])?.first?["uid"] as? String == uid)
            #expect(
                ((list.json["items"] as? [[String: Any]])?.first?["token"]) == nil,
                "the secret only in the create answer")
            let all = try await call(client, .get, "/api/v1/api_tokens?start=0&count=100", bob)
            #expect(all.json["total"] as? Int == 3)

            // get, delete (200 with the token), then it is gone.
            #expect(try await call(client, .get, "/api/v1/api_tokens/\(uid)", bob).status == .ok)
            let deleted = try await call(client, .delete, "/api/v1/api_tokens/\(uid)", bob)
            #expect(
                deleted.status == .ok && deleted.string("uid") == uid && !(deleted.json["deleted_at"] is NSNull),
                "\(deleted.text)")
            #expect(try await call(client, .get, "/api/v1/api_tokens/\(uid)", bob).status == .notFound)
            #expect(
                try await call(client, .get, "/api/v1/api_tokens?start=0&count=100", bob).json["total"] as? Int == 2)
            #expect(try await app.store.verify(secret).failureValue == .unknown, "deleted, as over /api-tokens")

            // Refusals: a revoked credential is 401, a bad date 422, an unknown scope 400; the audit names it all.
            #expect(try await call(client, .get, "/api/v1/auth/current", secret).status == .unauthorized)
            #expect(try await call(client, .get, "/api/v1/auth/current", "nope").status == .unauthorized)
            let badDate = try await call(
                client, .post, "/api/v1/api_tokens", bob,
                json: #"{"name": "x", "description": null, "scopes": null, "expired_at": "soon"}"#)
            #expect(badDate.status == .unprocessableContent)
            let badScope = try await call(
                client, .post, "/api/v1/api_tokens", bob,
                json: #"{"name": "x", "description": null, "scopes": ["write_cluster"], "expired_at": null}"#)
            #expect(badScope.status == .badRequest)
        }
    }

    /// The recipe in the README: BentoCloud's scope names in the catalog, implying ours.
    @Test func bentoCloudScopeNamesImplyOurs() async throws {
        try await TestApp.run { app, client in
            let recipe = #"""
                {"scopes": [
                  {"name": "api", "description": "BentoCloud: API access", "adminOnly": false, "implies": ["api:read", "api:write"]},
                  {"name": "read_organization", "description": "BentoCloud: read the organization", "adminOnly": false, "implies": ["tokens:read", "org:read"]},
                  {"name": "write_organization", "description": "BentoCloud: manage the organization", "adminOnly": true, "implies": ["tokens:write", "tokens:read", "org:admin"]},
                  {"name": "read_cluster", "description": "BentoCloud: read clusters", "adminOnly": false, "implies": ["api:read"]},
                  {"name": "write_cluster", "description": "BentoCloud: manage clusters", "adminOnly": false, "implies": ["api:write"]}]}
                """#
            #expect(
                try await client.call(.patch, "/orgs/acme", token: app.root.token.plaintext, json: recipe).status == .ok
            )
            try await app.addMember("carol")
            let carol = try #require(
                try await client.call(
                    .post, "/api-tokens/carol", token: app.root.token.plaintext,
                    json: #"{"name": "c", "scopes": ["read_organization", "api"]}"#
                )
                .string("token"))
            let list = try await call(client, .get, "/api/v1/api_tokens?start=0&count=10", carol)
            #expect(list.status == .ok, "read_organization implies tokens:read: \(list.text)")
            let verify = try await client.call(.get, "/auth/verify?scope=api:write", token: carol)
            #expect(verify.status == .ok, "api implies api:write")
            // write_organization is admin-only: a member cannot grant it to themselves.
            let denied = try await call(
                client, .post, "/api/v1/api_tokens", carol,
                json: #"{"name": "x", "description": null, "scopes": ["write_organization"], "expired_at": null}"#)
            #expect(denied.status == .badRequest || denied.status == .forbidden, "\(denied.text)")
        }
    }
}

extension ISO8601DateFormatter {
    static var withFractions: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
