import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import Testing

@testable import TesseraVerification

/// When the invalidation listener (re)connects, the notifications sent while no one listened are
/// lost: each cached answer is read again on the listener's connection and only those that
/// changed are dropped (before: the whole cache, so that after a failover every verification
/// went to a pool that might not reach the new leader yet, and live tokens failed closed).
@Suite struct CacheConfirmationTests {
    /// An organization token made behind the API's back (no cache involved).
    static func orgToken(_ store: TesseraStore, _ creator: VerifiedToken, name: String, secret: TokenSecret)
        async throws -> UUID
    {
        try await store.transaction { connection in
            try await TokenRepository(connection, logger: store.logger).insert(
                NewTokenRow(
                    orgID: creator.orgID, kind: .organization, ownerUserID: nil, username: "ci-bot", name: name,
                    description: nil, scopes: ["api:read"], groups: [], secret: secret, expiresAt: nil,
                    createdAt: Date(), createdBy: "root", createdByUserID: creator.ownerUserID))
        }
    }

    static func cached(_ cache: VerificationCache, _ secret: TokenSecret) -> Bool {
        cache.lookup(secret.hash, now: Date()) != nil
    }

    @Test func confirmingKeepsTheSameAnswersAndDropsChangedOnes() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            let creator = try await store.verify(boot.token.plaintext).get()
            let (revoked, kept, appearing) = (
                TokenSecret.generate(kind: .organization), TokenSecret.generate(kind: .organization),
                TokenSecret.generate(kind: .organization)
            )
            let revokedID = try await Self.orgToken(store, creator, name: "revoked", secret: revoked)
            _ = try await Self.orgToken(store, creator, name: "kept", secret: kept)
            let cache = VerificationCache(settings: VerificationCacheSettings())
            let verifier = TokenVerifier(store: store, cache: cache, lookupTimeout: .seconds(60))
            for secret in [boot.token, revoked, kept, appearing] { _ = await verifier.verify(secret.plaintext) }
            #expect([boot.token, revoked, kept, appearing].allSatisfy { Self.cached(cache, $0) })
            // Two organization tokens alike but for name and dates, read from the database, share
            // their facts (the bootstrap token, personal, has its own).
            #expect(cache.sharedFactsCount == 2)

            // While no one listened: one token revoked, one unknown hash became a token, and a
            // use recorded elsewhere (not a change of answer).
            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin' WHERE id = \(revokedID)"
            )
            _ = try await Self.orgToken(store, creator, name: "appearing", secret: appearing)
            try await client.query("UPDATE tokens SET last_used_at = now() WHERE id = \(boot.tokenUUID)")

            let connection = try await PostgresConnection.connect(
                configuration: try url.connectionConfiguration(), id: 1, logger: logger)
            let (keptCount, droppedCount) = try await verifier.confirmCache(on: connection, logger: logger)
            try await connection.close()
            #expect(keptCount == 2 && droppedCount == 2)
            #expect(Self.cached(cache, boot.token) && Self.cached(cache, kept))
            #expect(!Self.cached(cache, revoked) && !Self.cached(cache, appearing))
            #expect(await verifier.verify(revoked.plaintext) == .failed(.revoked))
            guard case .verified = await verifier.verify(appearing.plaintext) else {
                Issue.record("the new token verifies")
                return
            }
        }
    }

    /// The listener's connection is killed; a token is revoked about then. After it reconnects
    /// the revoked token is gone from the cache and the untouched one is still there.
    @Test func aReconnectingListenerKeepsWhatDidNotChange() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            let creator = try await store.verify(boot.token.plaintext).get()
            let (revoked, kept) = (TokenSecret.generate(kind: .organization), TokenSecret.generate(kind: .organization))
            let revokedID = try await Self.orgToken(store, creator, name: "revoked", secret: revoked)
            _ = try await Self.orgToken(store, creator, name: "kept", secret: kept)
            let cache = VerificationCache(settings: VerificationCacheSettings())
            let verifier = TokenVerifier(store: store, cache: cache, lookupTimeout: .seconds(60))
            let listener = InvalidationListener(
                configuration: try url.connectionConfiguration(), verifier: verifier, logger: logger,
                heartbeatInterval: .seconds(600))
            let running = Task { try await listener.run() }
            defer { running.cancel() }

            func listenerPID() async throws -> Int? {
                let rows = try await client.query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = \(InvalidationListener.applicationName)"
                )
                for try await pid in rows.decode(Int.self) { return pid }
                return nil
            }
            var first: Int?
            for _ in 0..<3000 {
                if listener.isConnected, let pid = try await listenerPID() {
                    first = pid
                    break
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            let pid = try #require(first, "the listener connects")
            for secret in [revoked, kept] { _ = await verifier.verify(secret.plaintext) }
            #expect(Self.cached(cache, revoked) && Self.cached(cache, kept))

            try await client.query("SELECT pg_terminate_backend(\(pid)::int)")
            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin' WHERE id = \(revokedID)"
            )
            var again = false
            for _ in 0..<3000 {
                if listener.isConnected, let now = try await listenerPID(), now != pid {
                    again = true
                    break
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(again, "the listener reconnects")
            #expect(!Self.cached(cache, revoked), "the revoked token left the cache")
            #expect(Self.cached(cache, kept), "the untouched one stayed")
            #expect(await verifier.verify(revoked.plaintext) == .failed(.revoked))
        }
    }
}
