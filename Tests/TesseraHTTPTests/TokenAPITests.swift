import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TesseraCore
import TesseraPostgres
import TesseraVerification
import Testing

/// LISA's `/api-tokens` routes for each kind of caller (DESIGN §4.1), against the real database.
@Suite struct TokenAPITests {
    let root = { (app: TestApp) in app.root.token.plaintext }

    @Test func listShowsMetadataButNeverSecrets() async throws {
        try await TestApp.run { app, client in
            for path in ["/api-tokens", "/api-tokens/", "/orgs/acme/api-tokens"] {
                let reply = try await client.call(.get, path, token: app.root.token.plaintext)
                #expect(reply.status == .ok, "\(path)")
                #expect(reply.tokens.count == 1)
                let token = try #require(reply.tokens.first)
                #expect(token["tokenUUID"] as? String == app.root.tokenUUID.uuidString.lowercased())
                #expect(token["username"] as? String == "root")
                #expect(token["isSystemToken"] as? Bool == false)
                #expect(token["isLegacy"] as? Bool == false)
                #expect(token["organization"] as? String == "acme")
                #expect(token["token"] == nil)
                #expect(!reply.text.containsTokenSecret)
            }
        }
    }

    @Test func credentialsInEveryLISAForm() async throws {
        try await TestApp.run { app, client in
            let secret = app.root.token.plaintext
            for headers: HTTPFields in [
                [.authorization: "Bearer \(secret)"], [.authorization: "bearer \(secret)"],
                [.authorization: "BEARER \(secret)"], [.authorization: secret], [HTTPField.Name("Api-Key")!: secret],
            ] {
                let reply = try await client.call(.get, "/api-tokens", headers: headers)
                #expect(reply.status == .ok)
            }
        }
    }

    @Test func missingOrBadCredentialsAre401() async throws {
        try await TestApp.run { app, client in
            let missing = try await client.call(.get, "/api-tokens")
            #expect(missing.status == .unauthorized)
            #expect(missing.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            #expect(missing.headers[.contentType] == "application/problem+json")

            let malformed = try await client.call(.get, "/api-tokens", token: "tsp_garbage")
            #expect(malformed.status == .unauthorized)
            #expect(malformed.headers[.wwwAuthenticate]?.contains("error=\"invalid_token\"") == true)

            let unknown = try await client.call(
                .get, "/api-tokens", token: TokenSecret.generate(kind: .personal).plaintext)
            #expect(unknown.status == .unauthorized)
            #expect(unknown.string("detail") == "The token is unknown")
            #expect(unknown.string("message") == "The token is unknown")
        }
    }

    @Test func adminCreatesOrganizationAndPersonalTokens() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("alice", groups: ["dev"])
            let root = app.root.token.plaintext

            let ci = try await client.call(
                .post, "/api-tokens/ci-bot", token: root,
                json: #"{"name": "ci", "isSystemToken": true, "scopes": ["api:read"], "description": "CI pipeline"}"#)
            #expect(ci.status == .created)
            #expect(ci.string("token")?.hasPrefix("tso_") == true)
            #expect(ci.json["isSystemToken"] as? Bool == true)
            #expect(ci.string("kind") == "organization")
            #expect(ci.string("username") == "ci-bot")
            #expect(ci.string("createdBy") == "root")
            #expect(ci.json["scopes"] as? [String] == ["api:read"])
            let ci2 = try await client.call(
                .post, "/api-tokens/ci-bot", token: root, json: #"{"name": "ci 2", "isSystemToken": true}"#)
            #expect(ci2.status == .created)

            let alice = try await client.call(
                .post, "/api-tokens/alice", token: root, json: #"{"name": "alice laptop"}"#)
            #expect(alice.status == .created)
            #expect(alice.string("token")?.hasPrefix("tsp_") == true)
            #expect(alice.json["groups"] as? [String] == ["dev"])
            let expiration = try #require(alice.json["tokenExpiration"] as? Int)
            #expect(abs(Double(expiration) - Date().addingTimeInterval(90 * 86_400).timeIntervalSince1970) < 60)
            #expect(Set(alice.json["scopes"] as? [String] ?? []) == Set(BuiltInScope.defaultTokenScopes))

            let again = try await client.call(.post, "/api-tokens/alice", token: root, json: #"{"name": "again"}"#)
            #expect(again.status == .badRequest)
            #expect(again.string("message") == "User alice already has a token")

            let stranger = try await client.call(.post, "/api-tokens/nobody", token: root, json: #"{"name": "x"}"#)
            #expect(stranger.status == .badRequest)

            // The new personal token works and sees its own token plus the organization tokens.
            let aliceToken = try #require(alice.string("token"))
            let list = try await client.call(.get, "/api-tokens", token: aliceToken)
            #expect(list.status == .ok)
            #expect(Set(list.tokens.compactMap { $0["name"] as? String }) == ["ci", "ci 2", "alice laptop"])
        }
    }

    @Test func membersCannotActAsAdmins() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("alice")
            let alice = try await client.call(
                .post, "/api-tokens/alice", token: app.root.token.plaintext, json: #"{"name": "a"}"#)
            let token = try #require(alice.string("token"))
            let forOther = try await client.call(.post, "/api-tokens/root", token: token, json: #"{"name": "x"}"#)
            #expect(forOther.status == .unauthorized)
            let system = try await client.call(
                .post, "/api-tokens/bot", token: token, json: #"{"name": "x", "isSystemToken": true}"#)
            #expect(system.status == .unauthorized)
            // Members cannot see or delete other people's tokens, and cannot delete org tokens.
            let rootToken = try await client.call(.get, "/api-tokens/\(app.root.tokenUUID)", token: token)
            #expect(rootToken.status == .notFound)
            #expect(rootToken.string("message") == "Token not found")
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: app.root.token.plaintext,
                json: #"{"name": "ci", "isSystemToken": true}"#)
            let ciID = try #require(ci.string("tokenUUID"))
            #expect(try await client.call(.get, "/api-tokens/\(ciID)", token: token).status == .ok)
            #expect(try await client.call(.delete, "/api-tokens/\(ciID)", token: token).status == .notFound)
            let deleted = try await client.call(.delete, "/api-tokens/\(ciID)", token: app.root.token.plaintext)
            #expect(deleted.status == .ok)
            #expect(deleted.string("message") == "Token deleted successfully")
            #expect(deleted.string("tokenUUID") == ciID)
            #expect(
                try await client.call(.get, "/api-tokens/\(ciID)", token: app.root.token.plaintext).status == .notFound)
            // The deleted org token no longer authenticates.
            let ciSecret = try #require(ci.string("token"))
            #expect(try await client.call(.get, "/api-tokens", token: ciSecret).status == .unauthorized)
        }
    }

    @Test func organizationTokensAsCallers() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let plain = try await client.call(
                .post, "/api-tokens/ci", token: root, json: #"{"name": "ci", "isSystemToken": true}"#)
            let ci = try #require(plain.string("token"))
            #expect(try await client.call(.get, "/api-tokens", token: ci).status == .ok)
            #expect(
                try await client.call(.post, "/api-tokens", token: ci, json: #"{"name": "x"}"#).status == .forbidden)
            #expect(
                try await client.call(
                    .post, "/api-tokens/other", token: ci, json: #"{"name": "x", "isSystemToken": true}"#
                ).status == .unauthorized)
            // With org:admin (granted by an admin) it manages the org's tokens.
            let adminCI = try await client.call(
                .post, "/api-tokens/ops", token: root,
                json: #"{"name": "ops", "isSystemToken": true, "scopes": ["org:admin"]}"#)
            let ops = try #require(adminCI.string("token"))
            #expect(
                try await client.call(
                    .post, "/api-tokens/other", token: ops, json: #"{"name": "x", "isSystemToken": true}"#
                ).status == .created)
            // A read-only token cannot write.
            let reader = try await client.call(
                .post, "/api-tokens/reader", token: root,
                json: #"{"name": "r", "isSystemToken": true, "scopes": ["api:read"]}"#)
            let readOnly = try #require(reader.string("token"))
            #expect(try await client.call(.get, "/api-tokens", token: readOnly).status == .forbidden)
        }
    }

    @Test func selfServiceWithJWTAndLISAMessages() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("bob", groups: ["team-a"])
            let jwt = try await TestApp.jwt("bob")
            let created = try await client.call(.post, "/api-tokens", token: jwt, json: #"{"name": "bob cli"}"#)
            #expect(created.status == .created)
            #expect(created.string("username") == "bob")
            #expect(created.json["groups"] as? [String] == ["team-a"])
            let again = try await client.call(.post, "/api-tokens/", token: jwt, json: #"{"name": "bob cli 2"}"#)
            #expect(again.status == .badRequest)
            #expect(again.string("message") == "Token for user already exists. Delete it first to create a new one.")
            // Own token: visible, deletable, then a new one may be created.
            let id = try #require(created.string("tokenUUID"))
            #expect(try await client.call(.delete, "/api-tokens/\(id)", token: jwt).status == .ok)
            #expect(
                try await client.call(.post, "/api-tokens", token: jwt, json: #"{"name": "bob 3"}"#).status == .created)
        }
    }

    @Test func apiGroupAndUserTokenPolicy() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("carol", groups: ["other"])
            try await app.store.client.query("UPDATE organizations SET api_group = 'api-users'")
            let jwt = try await TestApp.jwt("carol")
            let denied = try await client.call(.post, "/api-tokens", token: jwt, json: #"{"name": "c"}"#)
            #expect(denied.status == .forbidden)
            #expect(try await client.call(.get, "/api-tokens", token: jwt).status == .forbidden)
            try await app.addMember("carol", groups: ["api-users"])
            #expect(try await client.call(.get, "/api-tokens", token: jwt).status == .ok)
            try await app.store.client.query("UPDATE organizations SET user_tokens_enabled = false")
            let disabled = try await client.call(.post, "/api-tokens", token: jwt, json: #"{"name": "c"}"#)
            #expect(disabled.status == .forbidden)
            // Admins are not bound by either rule.
            let admin = try await client.call(
                .post, "/api-tokens/carol", token: app.root.token.plaintext, json: #"{"name": "c"}"#)
            #expect(admin.status == .created)
        }
    }

    @Test func malformedBodies() async throws {
        try await TestApp.run { app, client in
            let root = app.root.token.plaintext
            let cases: [(String, HTTPResponse.Status, String?)] = [
                ("{not json", .unprocessableContent, "body"),
                ("", .unprocessableContent, "body"),
                (#"{"name": 5, "isSystemToken": true}"#, .unprocessableContent, "name"),
                (#"{"isSystemToken": true}"#, .unprocessableContent, "name"),
                (
                    #"{"name": "x", "isSystemToken": true, "tokenExpiration": "soon"}"#, .unprocessableContent,
                    "tokenExpiration"
                ),
                (#"{"name": "x", "isSystemToken": true, "scopes": "api:read"}"#, .unprocessableContent, "scopes"),
                (#"{"name": "", "isSystemToken": true}"#, .unprocessableContent, "name"),
                (#"{"name": "x", "isSystemToken": true, "tokenExpiration": 1000}"#, .badRequest, nil),
                (#"{"name": "x", "isSystemToken": true, "scopes": ["nuke:all"]}"#, .badRequest, nil),
                (#"{"name": "x", "isSystemToken": true, "scopes": ["platform:admin"]}"#, .badRequest, nil),
            ]
            for (body, status, field) in cases {
                let reply = try await client.call(.post, "/api-tokens/svc", token: root, json: body)
                #expect(reply.status == status, "\(body): \(reply.text)")
                #expect(reply.headers[.contentType] == "application/problem+json")
                if let field {
                    let errors = reply.json["errors"] as? [[String: Any]]
                    #expect(errors?.first?["field"] as? String == field, "\(body): \(reply.text)")
                }
            }
            let unknownFields = try await client.call(
                .post, "/api-tokens/svc", token: root, json: #"{"name": "ok", "isSystemToken": true, "colour": "blue"}"#
            )
            #expect(unknownFields.status == .created)
            let huge = try await client.call(
                .post, "/api-tokens/svc", token: root,
                json: #"{"name": ""# + String(repeating: "a", count: 1_100_000) + #""}"#)
            #expect(huge.status == .contentTooLarge)
            // nothing but the one good token was written
            let tokens = try await app.store.client.query("SELECT count(*) FROM tokens").decode(Int.self)
            for try await count in tokens { #expect(count == 2) }
        }
    }

    @Test func otherOrganizationsSeeNothing() async throws {
        try await TestApp.run { app, client in
            // A member of another org (not a platform admin, whose token may act in any org).
            let other = try await app.store.bootstrap(organization: "globex", admin: "gadmin")
            try await app.addMember("gus", org: "globex")
            let gus = try await client.call(
                .post, "/api-tokens/gus", token: other.token.plaintext, json: #"{"name": "g"}"#)
            let otherToken = try #require(gus.string("token"))
            #expect(
                try await client.call(.get, "/api-tokens/\(app.root.tokenUUID)", token: otherToken).status == .notFound)
            #expect(
                try await client.call(.delete, "/api-tokens/\(app.root.tokenUUID)", token: otherToken).status
                    == .notFound)
            #expect(try await client.call(.get, "/orgs/acme/api-tokens", token: otherToken).status == .notFound)
            let list = try await client.call(.get, "/api-tokens", token: otherToken)
            #expect(list.tokens.map { $0["organization"] as? String } == ["globex"])
            // The platform admin's bootstrap token of globex may act in acme through /orgs/acme.
            #expect(try await client.call(.get, "/orgs/acme/api-tokens", token: other.token.plaintext).status == .ok)
        }
    }

    @Test func fiftyConcurrentSelfCreatesOneWins() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("dave")
            let jwt = try await TestApp.jwt("dave")
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for index in 0..<50 {
                    group.addTask {
                        try await client.call(.post, "/api-tokens", token: jwt, json: #"{"name": "d\#(index)"}"#).status
                    }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .created }.count == 1)
            #expect(statuses.filter { $0 == .badRequest }.count == 49)
        }
    }

    /// `personalTokenLimit` at 4 (#13): fifty concurrent self-creates, exactly four win, the rest
    /// get a 400 naming the limit; the org policy shows it.
    @Test func fiftyConcurrentSelfCreatesUnderALimitOfFour() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("fay")
            let raised = try await client.call(
                .patch, "/orgs/acme", token: app.root.token.plaintext, json: #"{"personalTokenLimit": 4}"#)
            #expect(raised.status == .ok && raised.json["personalTokenLimit"] as? Int == 4)
            #expect(
                try await client.call(
                    .patch, "/orgs/acme", token: app.root.token.plaintext, json: #"{"personalTokenLimit": 0}"#
                ).status == .unprocessableContent)
            let jwt = try await TestApp.jwt("fay")
            let replies = try await withThrowingTaskGroup(of: Reply.self) { group in
                for index in 0..<50 {
                    group.addTask {
                        try await client.call(.post, "/api-tokens", token: jwt, json: #"{"name": "f\#(index)"}"#)
                    }
                }
                return try await group.reduce(into: [Reply]()) { $0.append($1) }
            }
            #expect(replies.filter { $0.status == .created }.count == 4)
            let refused = replies.filter { $0.status == .badRequest }
            #expect(refused.count == 46)
            #expect(
                refused.first?.string("detail")
                    == "You already have 4 tokens, the limit of this organization. Delete one first to create a new one."
            )
            let admin = try await client.call(
                .post, "/api-tokens/fay", token: app.root.token.plaintext, json: #"{"name": "more"}"#)
            #expect(
                admin.status == .badRequest
                    && admin.string("detail") == "User fay already has 4 tokens, the limit of this organization")
        }
    }

    @Test func leaversTokenStopsAtOnceButOrgTokensTheyCreatedLive() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("erin", role: .admin)
            let erin = try await client.call(
                .post, "/api-tokens/erin", token: app.root.token.plaintext, json: #"{"name": "e"}"#)
            let erinToken = try #require(erin.string("token"))
            let ci = try await client.call(
                .post, "/api-tokens/ci", token: erinToken, json: #"{"name": "ci", "isSystemToken": true}"#)
            #expect(ci.status == .created)
            let ciToken = try #require(ci.string("token"))
            let erinID = try #require(
                try await app.store.client.withConnection {
                    try await UserRepository($0, logger: app.store.logger).find(username: "erin")
                }?.id)
            let org = app.root.organization
            _ = try await app.store.transaction { connection in
                let orgID = try #require(
                    try await OrganizationRepository(connection, logger: app.store.logger).find(slug: org)
                ).id
                return try await MembershipRepository(connection, logger: app.store.logger).remove(
                    orgID: orgID, userID: erinID)
            }
            #expect(try await client.call(.get, "/api-tokens", token: erinToken).status == .unauthorized)
            let ciList = try await client.call(.get, "/api-tokens", token: ciToken)
            #expect(ciList.status == .ok)
            let ciInfo = ciList.tokens.first { $0["name"] as? String == "ci" }
            #expect(ciInfo?["createdBy"] as? String == "erin")
        }
    }
}
