import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TesseraCore
import TesseraPostgres
import TesseraVerification
import Testing

/// The bad-input matrix (issue #7): every case gets a 4xx problem with a clear detail, never a
/// 5xx, and writes nothing (tokens, memberships, users and audit events are counted before and
/// after each case).
@Suite struct BadInputTests {
    struct Case: Sendable, CustomStringConvertible {
        let name: String
        let method: HTTPRequest.Method
        let path: String
        let body: [UInt8]?
        let status: Int
        var contentType = "application/json"
        var description: String { name }

        init(_ name: String, _ method: HTTPRequest.Method, _ path: String, _ body: String?, _ status: Int) {
            self.name = name
            self.method = method
            self.path = path
            self.body = body.map { Array($0.utf8) }
            self.status = status
        }

        init(_ name: String, _ method: HTTPRequest.Method, _ path: String, bytes: [UInt8], _ status: Int) {
            self.name = name
            self.method = method
            self.path = path
            self.body = bytes
            self.status = status
        }
    }

    static let unknownID = "00000000-0000-4000-8000-000000000000"
    static let cases: [Case] = [
        Case("malformed JSON", .post, "/api-tokens/ci", #"{"name": "x", "isSystemToken": tr"#, 422),
        Case("not an object", .post, "/api-tokens/ci", #"["name"]"#, 422),
        Case("wrong type for name", .post, "/api-tokens/ci", #"{"name": 5}"#, 422),
        Case("wrong type for scopes", .post, "/api-tokens/ci", #"{"name": "x", "scopes": "api:read"}"#, 422),
        Case("missing name", .post, "/api-tokens/ci", #"{"isSystemToken": true}"#, 422),
        Case("empty body", .post, "/api-tokens/ci", "", 422),
        Case("null body", .post, "/api-tokens/ci", "null", 422),
        Case(
            "10 MB body", .post, "/api-tokens/ci", #"{"name": ""# + String(repeating: "a", count: 10 << 20) + #""}"#,
            413),
        Case("NUL byte in name", .post, "/api-tokens/ci", #"{"name": "a\u0000b", "isSystemToken": true}"#, 422),
        Case(
            "invalid UTF-8", .post, "/api-tokens/ci",
            bytes: Array(#"{"name": ""#.utf8) + [0xC3, 0x28, 0xFF] + Array(#""}"#.utf8), 422),
        Case(
            "100 kB name", .post, "/api-tokens/ci",
            #"{"name": ""# + String(repeating: "n", count: 100_000) + #"", "isSystemToken": true}"#, 422),
        Case(
            "negative expiration", .post, "/api-tokens/ci",
            #"{"name": "x", "isSystemToken": true, "tokenExpiration": -5}"#, 400),
        Case(
            "huge expiration", .post, "/api-tokens/ci",
            #"{"name": "x", "isSystemToken": true, "tokenExpiration": 99999999999999999999}"#, 422),
        Case(
            "float expiration", .post, "/api-tokens/ci",
            #"{"name": "x", "isSystemToken": true, "tokenExpiration": 1.5}"#, 422),
        Case(
            "expiration in the past", .post, "/api-tokens/ci",
            #"{"name": "x", "isSystemToken": true, "tokenExpiration": 1000000000}"#, 400),
        Case("NUL in a query", .get, "/api-tokens?search=a%00b", nil, 400),
        Case("NUL in a path", .get, "/users/root%00", nil, 400),
        Case("invalid UTF-8 in a query", .get, "/api-tokens?search=%C3%28", nil, 400),
        Case("a method the path does not take", .put, "/api-tokens/self", "{}", 405),
        Case(
            "unknown scope", .post, "/api-tokens/ci", #"{"name": "x", "isSystemToken": true, "scopes": ["nope"]}"#, 400),
        Case("bad label", .post, "/api-tokens/..%2F..%2Fetc", #"{"name": "x", "isSystemToken": true}"#, 400),
        Case("unknown token id", .get, "/api-tokens/\(unknownID)", nil, 404),
        Case("non-UUID token id", .get, "/api-tokens/not-a-uuid", nil, 404),
        Case("path traversal in id", .get, "/api-tokens/..%2F..%2Fetc%2Fpasswd", nil, 404),
        Case("path traversal in org", .get, "/orgs/..%2Facme/api-tokens", nil, 404),
        Case("patch of unknown token", .patch, "/api-tokens/\(unknownID)", #"{"name": "x"}"#, 404),
        Case("patch with wrong status", .patch, "/api-tokens/SELF", #"{"status": "revoked"}"#, 422),
        Case("patch with a NUL name", .patch, "/api-tokens/SELF", #"{"name": "\u0000"}"#, 422),
        Case("delete of unknown token", .delete, "/api-tokens/\(unknownID)", nil, 404),
        Case("rotate with negative overlap", .post, "/api-tokens/SELF/rotate", #"{"overlapSeconds": -1}"#, 422),
        Case(
            "rotate with a day and a second of overlap", .post, "/api-tokens/SELF/rotate",
            #"{"overlapSeconds": 86401}"#, 422),
        Case("duplicate query parameter", .get, "/api-tokens?limit=5&limit=2000", nil, 400),
        Case("limit out of range", .get, "/api-tokens?limit=100000", nil, 400),
        Case("garbage cursor", .get, "/api-tokens?cursor=%27%3B--", nil, 400),
        Case("member with a bad username", .put, "/orgs/acme/members/bad%20name", #"{"role": "member"}"#, 400),
        Case("member with a bad role", .put, "/orgs/acme/members/zed", #"{"role": "owner"}"#, 422),
        Case("policy with negative lifetime", .patch, "/orgs/acme", #"{"defaultTokenLifetimeDays": -1}"#, 422),
        Case("org with a bad slug", .post, "/orgs", #"{"slug": "../x"}"#, 422),
        Case(
            "user with a 100 kB name", .post, "/users",
            #"{"username": ""# + String(repeating: "u", count: 100_000) + #""}"#, 422),
        Case("audit with a bad time", .get, "/orgs/acme/audit-events?since=yesterday", nil, 400),
    ]

    static func counts(_ app: TestApp) async throws -> [Int] {
        var result: [Int] = []
        for table in ["tokens", "memberships", "users", "organizations", "audit_events"] {
            let rows = try await app.store.client.query("SELECT count(*)::int FROM \(unescaped: table)")
            for try await count in rows.decode(Int.self) { result.append(count) }
        }
        return result
    }

    @Test(arguments: cases)
    func refusedClearlyAndNothingWritten(_ bad: Case) async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let before = try await Self.counts(app)
            var headers: HTTPFields = [.authorization: "Bearer \(root)"]
            if bad.body != nil { headers[.contentType] = bad.contentType }
            let path = bad.path.replacingOccurrences(of: "SELF", with: app.root.tokenUUID.uuidString.lowercased())
            let reply = try await client.execute(
                uri: path, method: bad.method, headers: headers, body: bad.body.map { ByteBuffer(bytes: $0) }
            ) { Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body)) }
            #expect(reply.status.code == bad.status, "\(bad.name): \(reply.status.code) \(reply.text.prefix(300))")
            #expect(reply.headers[.contentType] == "application/problem+json", "\(bad.name)")
            let detail = reply.json["detail"] as? String ?? ""
            #expect(!detail.isEmpty && detail.count < 500, "\(bad.name): detail \(detail.prefix(100))")
            #expect(!reply.text.containsTokenSecret)
            #expect(try await Self.counts(app) == before, "\(bad.name) wrote something")
        }
    }

    /// SQL metacharacters are data, not syntax: they round-trip in names and match nothing in search.
    @Test func sqlMetacharactersAreJustText() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let name = #"x'); DROP TABLE tokens; -- \ % _"#
            let created = try await client.call(
                .post, "/api-tokens/ci", token: root,
                json: String(
                    data: try JSONSerialization.data(withJSONObject: ["name": name, "isSystemToken": true]),
                    encoding: .utf8))
            #expect(created.status == .created)
            #expect(created.string("name") == name)
            for search in ["%27%3B%20DROP%20TABLE%20tokens%3B--", "%5C", "_", "%25", "%00", "%2F..%2F"] {
                let reply = try await client.call(.get, "/api-tokens?search=\(search)", token: root)
                #expect(reply.status == .ok || reply.status == .badRequest, "search \(search): \(reply.status)")
            }
            let found = try await client.call(.get, "/api-tokens?search=DROP%20TABLE", token: root)
            #expect(found.tokens.compactMap { $0["name"] as? String } == [name])
        }
    }

    /// Every token-shaped garbage string: 401 with its own reason, no lookup for malformed ones.
    @Test func tokenShapedGarbage() async throws {
        try await TestApp.run { app, client in
            let real = app.root.token.plaintext
            let body = String(real.dropFirst(4))
            let unknown = TokenSecret.generate(kind: .personal).plaintext
            let cases: [(String, String)] = [
                ("tsx_" + body, "malformed"), ("TSP_" + body, "malformed"), (real.uppercased(), "malformed"),
                (String(real.dropLast()), "malformed"), (real + "0", "malformed"),
                (String(real.dropLast()) + (real.last == "0" ? "1" : "0"), "malformed"),
                ("tsp_" + String(repeating: "g", count: 128), "malformed"), ("tso_" + body, "unknown"),
                (unknown, "unknown"), ("tsp_", "malformed"), (String(repeating: "a", count: 10_000), "malformed"),
            ]
            for (presented, reason) in cases {
                let reply = try await client.call(.get, "/api-tokens", headers: [.authorization: "Bearer \(presented)"])
                #expect(reply.status == .unauthorized, "\(reason)")
                #expect(
                    reply.string("detail") == VerificationFailure(rawValue: reason)!.description,
                    "\(presented.prefix(12))")
                #expect(!reply.text.contains(presented))
                let verify = try await client.verify(presented)
                #expect(
                    verify.status == .unauthorized
                        && verify.challenge.contains(VerificationFailure(rawValue: reason)!.description))
            }
        }
    }
}

extension BadInputTests {
    static let fuzzFound: [Case] = [
        Case(
            "policy with default scopes outside the catalog", .patch, "/orgs/acme",
            #"{"defaultScopes": ["a"], "scopes": []}"#, 400),
        Case(
            "a number no Swift type holds", .post, "/api-tokens/ci",
            #"{"name": "x", "isSystemToken": true, "tokenExpiration": 2.5890419884777833e-42}"#, 422),
        Case(
            "an unrepresentable number in a merge-patch", .patch, "/orgs/acme",
            #"{"idleTimeoutDays": 2.5890419884777833e-42}"#, 422),
        Case(
            "explicit null for a non-nullable field", .post, "/users", #"{"username": "pat", "platformAdmin": null}"#,
            422),
        Case("empty enum parameter", .get, "/api-tokens?kind=", nil, 400),
    ]

    @Test(arguments: fuzzFound)
    func foundByFuzzing(_ bad: Case) async throws {
        try await refusedClearlyAndNothingWritten(bad)
    }
}
