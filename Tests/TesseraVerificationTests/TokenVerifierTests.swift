import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

/// Verification outcomes against the real database (DESIGN §5).
@Suite struct TokenVerifierTests {
    struct Fixed: WallClock {
        let date: Date
        func now() -> Date { date }
    }

    func withBootstrap(
        clock: any WallClock = SystemWallClock(),
        _ body: @escaping @Sendable (TesseraStore, PostgresClient, BootstrapResult) async throws -> Void
    ) async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let result = try await TesseraStore(client: client, logger: logger).bootstrap(
                organization: "acme", admin: "root")
            try await body(TesseraStore(client: client, logger: logger, clock: clock), client, result)
        }
    }

    @Test func bootstrapTokenVerifiesWithItsIdentity() async throws {
        try await withBootstrap { store, _, result in
            let token = try await store.verify(result.token.plaintext).get()
            #expect(token.tokenID == result.tokenUUID)
            #expect(token.orgSlug == "acme")
            #expect(token.username == "root")
            #expect(token.role == .admin)
            #expect(token.platformAdmin)
            #expect(token.kind == .personal)
            #expect(Set(token.scopes) == Set(BuiltInScope.bootstrapScopes))
        }
    }

    @Test func malformedAndUnknownAreTold() async throws {
        try await withBootstrap { store, _, _ in
            let malformed = try await store.verify("tsp_nope")
            #expect(malformed == .failure(.malformed))
            let unknown = try await store.verify(TokenSecret.generate(kind: .personal).plaintext)
            #expect(unknown == .failure(.unknown))
        }
    }

    @Test func inactiveRevokedAndReactivated() async throws {
        try await withBootstrap { store, client, result in
            try await client.query("UPDATE tokens SET status = 'inactive' WHERE id = \(result.tokenUUID)")
            #expect(try await store.verify(result.token.plaintext) == .failure(.inactive))
            try await client.query("UPDATE tokens SET status = 'active' WHERE id = \(result.tokenUUID)")
            #expect(try await store.verify(result.token.plaintext).get().tokenID == result.tokenUUID)
            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin' WHERE id = \(result.tokenUUID)"
            )
            #expect(try await store.verify(result.token.plaintext) == .failure(.revoked))
        }
    }

    @Test func expiredAtTheInjectedClock() async throws {
        try await withBootstrap(clock: Fixed(date: Date().addingTimeInterval(91 * 86_400))) { store, _, result in
            let outcome = try await store.verify(result.token.plaintext)
            #expect(outcome == .failure(.expired))
        }
    }

    @Test func disabledOwnerFailsEvenWithoutTheCascade() async throws {
        try await withBootstrap { store, client, result in
            // Defense in depth: the cascade is not run here on purpose.
            try await client.query("UPDATE users SET status = 'disabled' WHERE username = 'root'")
            #expect(try await store.verify(result.token.plaintext) == .failure(.ownerInactive))
        }
    }

    @Test func organizationTokenSurvivesItsCreatorLeaving() async throws {
        try await withBootstrap { store, client, result in
            let creator = try await store.verify(result.token.plaintext).get()
            let secret = TokenSecret.generate(kind: .organization)
            _ = try await store.transaction { connection in
                try await TokenRepository(connection, logger: store.logger).insert(
                    NewTokenRow(
                        orgID: creator.orgID, kind: .organization, ownerUserID: nil, username: "ci-bot", name: "ci",
                        description: nil, scopes: ["api:read"], groups: [], secret: secret, expiresAt: nil,
                        createdAt: Date(), createdBy: "root", createdByUserID: creator.ownerUserID))
            }
            try await store.transaction { connection in
                try await connection.query(
                    "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'owner_left_org' WHERE kind = 'personal'",
                    logger: store.logger)
                try await connection.query("DELETE FROM memberships", logger: store.logger)
            }
            #expect(try await store.verify(result.token.plaintext) == .failure(.revoked))
            let ci = try await store.verify(secret.plaintext).get()
            #expect(ci.kind == .organization)
            #expect(ci.username == "ci-bot")
            #expect(ci.role == nil)
        }
    }
}
