import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import Testing

/// The rules of DESIGN §2 that live in the database, proven against a real PostgreSQL.
@Suite struct SchemaConstraintTests {
    struct Fixture: Sendable {
        let orgID: UUID
        let userID: UUID
        let bootstrapTokenID: UUID
    }

    /// A bootstrapped org `acme` with platform admin `root`, plus member `alice`.
    func withFixture(_ body: @escaping @Sendable (PostgresClient, Logger, Fixture) async throws -> Void) async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let result = try await store.bootstrap(organization: "acme", admin: "root")
            let orgID = try await client.values("SELECT id FROM organizations WHERE slug = 'acme'", as: UUID.self)[0]
            let userID = try await store.transaction { connection in
                let id = try await UserRepository(connection, logger: logger).upsert(
                    username: "alice", platformAdmin: false)
                try await MembershipRepository(connection, logger: logger).put(
                    orgID: orgID, userID: id, role: .member, groups: ["dev"])
                return id
            }
            try await body(client, logger, Fixture(orgID: orgID, userID: userID, bootstrapTokenID: result.tokenUUID))
        }
    }

    func personalToken(_ fixture: Fixture, scopes: [String] = ["api:read"]) -> NewTokenRow {
        NewTokenRow(
            orgID: fixture.orgID, kind: .personal, ownerUserID: fixture.userID, username: "alice", name: "laptop",
            description: nil, scopes: scopes, groups: ["dev"], secret: .generate(kind: .personal),
            expiresAt: Date().addingTimeInterval(3600), createdAt: Date(), createdBy: "alice",
            createdByUserID: fixture.userID
        )
    }

    func insert(_ row: NewTokenRow, _ client: PostgresClient, _ logger: Logger) async throws -> UUID {
        try await client.withConnection { try await TokenRepository($0, logger: logger).insert(row) }
    }

    func expectViolation(_ constraint: String, _ operation: () async throws -> Void) async {
        do {
            try await operation()
            Issue.record("expected a violation of \(constraint)")
        } catch let error as PSQLError {
            #expect(error.constraintName == constraint, "\(String(reflecting: error))")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func bootstrapWritesOrgUserMembershipTokenAndAudit() async throws {
        try await withFixture { client, _, fixture in
            #expect(
                try await client.values("SELECT platform_admin FROM users WHERE username = 'root'", as: Bool.self) == [
                    true
                ])
            #expect(
                try await client.values(
                    "SELECT role FROM memberships m JOIN users u ON u.id = m.user_id WHERE username = 'root'",
                    as: String.self) == ["admin"])
            #expect(
                try await client.values("SELECT count(*) FROM scopes WHERE org_id = \(fixture.orgID)", as: Int.self)
                    == [BuiltInScope.all.count])
            let scopes = try await client.values(
                "SELECT scopes FROM tokens WHERE id = \(fixture.bootstrapTokenID)", as: [String].self)
            #expect(scopes == [BuiltInScope.bootstrapScopes])
            #expect(try await client.values("SELECT action FROM audit_events", as: String.self) == ["org.bootstrapped"])
        }
    }

    @Test func bootstrapTwiceIsRefused() async throws {
        try await withFixture { client, logger, _ in
            await #expect(throws: BootstrapError.organizationExists("acme")) {
                try await TesseraStore(client: client, logger: logger).bootstrap(organization: "acme", admin: "other")
            }
            let tokens = try await client.values("SELECT count(*) FROM tokens", as: Int.self)
            #expect(tokens == [1])
        }
    }

    @Test func secondLivePersonalTokenIsRejected() async throws {
        try await withFixture { client, logger, fixture in
            let first = try await insert(personalToken(fixture), client, logger)
            await expectViolation("tokens_personal_token_limit") {
                _ = try await insert(personalToken(fixture), client, logger)
            }
            // Once the first is revoked, a new one may be created.
            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin' WHERE id = \(first)"
            )
            _ = try await insert(personalToken(fixture), client, logger)
        }
    }

    @Test func concurrentPersonalTokensOnlyOneWins() async throws {
        try await withFixture { client, logger, fixture in
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<20 {
                    group.addTask { (try? await insert(personalToken(fixture), client, logger)) != nil }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
        }
    }

    /// The org's `personal_token_limit` (#13): at N, twenty concurrent inserts give exactly N
    /// live tokens; revoking one makes room for one more; the count follows deletes too.
    @Test func theLimitHoldsAtNUnderConcurrency() async throws {
        try await withFixture { client, logger, fixture in
            try await client.query("UPDATE organizations SET personal_token_limit = 3 WHERE id = \(fixture.orgID)")
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<20 {
                    group.addTask { (try? await insert(personalToken(fixture), client, logger)) != nil }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 3)
            await expectViolation("tokens_personal_token_limit") {
                _ = try await insert(personalToken(fixture), client, logger)
            }
            try await client.query(
                """
                UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin'
                WHERE id = (SELECT id FROM tokens WHERE owner_user_id = \(fixture.userID) AND status = 'active' LIMIT 1)
                """)
            _ = try await insert(personalToken(fixture), client, logger)
            try await client.query("DELETE FROM tokens WHERE owner_user_id = \(fixture.userID) AND status = 'active'")
            let count = try await client.values(
                "SELECT live_personal_tokens FROM memberships WHERE user_id = \(fixture.userID)", as: Int.self)
            #expect(count == [0])
        }
    }

    @Test func organizationTokensAreUnlimited() async throws {
        try await withFixture { client, logger, fixture in
            for index in 0..<3 {
                var row = personalToken(fixture)
                row.kind = .organization
                row.ownerUserID = nil
                row.username = "ci-bot"
                row.name = "ci \(index)"
                row.secret = .generate(kind: .organization)
                _ = try await insert(row, client, logger)
            }
            #expect(
                try await client.values("SELECT count(*) FROM tokens WHERE kind = 'organization'", as: Int.self) == [3])
        }
    }

    @Test func removingAMemberWithALiveTokenIsRefusedUntilRevoked() async throws {
        try await withFixture { client, logger, fixture in
            let token = try await insert(personalToken(fixture), client, logger)
            await expectViolation("live_personal_token_has_owner") {
                try await client.query("DELETE FROM memberships WHERE user_id = \(fixture.userID)")
            }
            await expectViolation("live_personal_token_has_owner") {
                try await client.query("DELETE FROM users WHERE id = \(fixture.userID)")
            }
            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'owner_left_org' WHERE id = \(token)"
            )
            try await client.query("DELETE FROM memberships WHERE user_id = \(fixture.userID)")
            #expect(
                try await client.values("SELECT username FROM tokens WHERE id = \(token)", as: String.self) == ["alice"]
            )
        }
    }

    @Test func personalTokenOwnerMustBeAMember() async throws {
        try await withFixture { client, logger, fixture in
            let outsider = try await client.withConnection {
                try await UserRepository($0, logger: logger).upsert(username: "mallory", platformAdmin: false)
            }
            var row = personalToken(fixture)
            row.ownerUserID = outsider
            await expectViolation("tokens_org_id_owner_user_id_fkey") { _ = try await insert(row, client, logger) }
        }
    }

    @Test func scopesMustComeFromTheCatalog() async throws {
        try await withFixture { client, logger, fixture in
            await expectViolation("token_scopes_in_catalog") {
                _ = try await insert(personalToken(fixture, scopes: ["api:read", "nuke:everything"]), client, logger)
            }
            await expectViolation("tokens_scopes_check") {
                _ = try await insert(personalToken(fixture, scopes: []), client, logger)
            }
        }
    }

    @Test func scopesAreImmutableAndRevocationIsFinal() async throws {
        try await withFixture { client, logger, fixture in
            let token = try await insert(personalToken(fixture), client, logger)
            await expectViolation("token_scopes_immutable") {
                try await client.query("UPDATE tokens SET scopes = '{api:write}' WHERE id = \(token)")
            }
            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'rotated' WHERE id = \(token)"
            )
            await expectViolation("token_revocation_final") {
                try await client.query(
                    "UPDATE tokens SET status = 'active', revoked_at = NULL, revoked_reason = NULL WHERE id = \(token)")
            }
        }
    }

    @Test func revocationFieldsMatchStatus() async throws {
        try await withFixture { client, logger, fixture in
            let token = try await insert(personalToken(fixture), client, logger)
            await expectViolation("revocation_fields_match_status") {
                try await client.query("UPDATE tokens SET status = 'revoked' WHERE id = \(token)")
            }
        }
    }

    @Test func checksOnNames() async throws {
        try await withFixture { client, logger, fixture in
            await expectViolation("organizations_slug_check") {
                try await client.query("INSERT INTO organizations (slug, display_name) VALUES ('Bad Slug', 'x')")
            }
            await expectViolation("users_username_check") {
                try await client.query("INSERT INTO users (username) VALUES ('a b')")
            }
            var row = personalToken(fixture)
            row.name = String(repeating: "n", count: 201)
            await expectViolation("tokens_name_check") { _ = try await insert(row, client, logger) }
            await expectViolation("memberships_role_check") {
                try await client.query("UPDATE memberships SET role = 'owner'")
            }
        }
    }

    @Test func deletingAnOrganizationRemovesItsTokens() async throws {
        try await withFixture { client, logger, fixture in
            _ = try await insert(personalToken(fixture), client, logger)
            try await client.query("DELETE FROM organizations WHERE id = \(fixture.orgID)")
            #expect(try await client.values("SELECT count(*) FROM tokens", as: Int.self) == [0])
            #expect(try await client.values("SELECT count(*) FROM memberships", as: Int.self) == [0])
            // the audit trail outlives the organization
            #expect(try await client.values("SELECT count(*) FROM audit_events", as: Int.self) == [1])
        }
    }
}
