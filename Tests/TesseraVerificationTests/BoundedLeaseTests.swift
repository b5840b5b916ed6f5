import Foundation
import Synchronization
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

/// A management request must not wait for a connection as long as PostgresNIO's pool would (a
/// minute of backoff during an outage or a failover): `TesseraStore.withConnection` gives up after
/// its lease timeout. And when the cache barrier cannot confirm a write (listener down), only what
/// the write touched leaves the cache.
@Suite struct BoundedLeaseTests {
    @Test func aLeaseThatWaitsTooLongFailsAndTheNextOneWorks() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger, leaseTimeout: .milliseconds(200))
            let patient = TesseraStore(client: client, logger: logger, leaseTimeout: nil)
            let gate = LookupBatcherTests.Gate()
            // The test client's pool has 4 connections: hold them all (connecting may be slow
            // while the rest of the suite runs, hence the patient store and the long wait).
            let holders = (0..<4).map { _ in
                Task { try await patient.withConnection { _ in await gate.wait() } }
            }
            for _ in 0..<6000 where gate.arrived < 4 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(gate.arrived == 4)
            await #expect(throws: TimeoutError.self) {
                try await store.withConnection { try await $0.query("SELECT 1", logger: logger) }
            }
            gate.open()
            for holder in holders { try await holder.value }
            let rows = try await store.query("SELECT 1", logger: logger)
            #expect(rows.count == 1)
        }
    }

    @Test func anUnreachableDatabaseFailsTheLeaseInsteadOfHanging() async throws {
        let url = try DatabaseURL("postgres://tessera@127.0.0.1:1/tessera")  // nothing listens on port 1
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger, leaseTimeout: .milliseconds(300))
            await #expect(throws: TimeoutError.self) {
                try await store.transaction { try await $0.query("SELECT 1", logger: logger) }
            }
        }
    }

    /// While the listener is not connected a revocation made elsewhere is not heard: a cached
    /// answer is asked again of the database (and served as cached only when that fails).
    @Test func aDeafCacheAsksTheDatabaseAgain() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            // A generous lookup deadline: the suite shares 2 cores, and a first lookup can take seconds.
            let verifier = TokenVerifier(
                store: store, cache: VerificationCache(settings: VerificationCacheSettings()),
                lookupTimeout: .seconds(60))
            guard case .verified = await verifier.verify(boot.token.plaintext) else {
                Issue.record("the token verifies")
                return
            }
            // Revoked behind the cache's back (no listener has heard it) while the cache was hearing:
            // the cached answer stands, as the TTL allows.
            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin' WHERE id = \(boot.tokenUUID)"
            )
            guard case .verified = await verifier.verify(boot.token.plaintext) else {
                Issue.record("a hearing cache serves its entry")
                return
            }
            // A listener that is not connected makes the cache deaf: the next hit asks again.
            _ = InvalidationListener(
                configuration: try url.connectionConfiguration(), verifier: verifier, logger: logger)
            #expect(await verifier.verify(boot.token.plaintext) == .failed(.revoked))
        }
    }

    @Test func anUnconfirmedBarrierDropsOnlyWhatTheWriteTouched() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            let other = TokenSecret.generate(kind: .organization)
            let creator = try await store.verify(boot.token.plaintext).get()
            _ = try await store.transaction { connection in
                try await TokenRepository(connection, logger: logger).insert(
                    NewTokenRow(
                        orgID: creator.orgID, kind: .organization, ownerUserID: nil, username: "ci-bot", name: "ci",
                        description: nil, scopes: ["api:read"], groups: [], secret: other, expiresAt: nil,
                        createdAt: Date(), createdBy: "root", createdByUserID: creator.ownerUserID))
            }
            let cache = VerificationCache(settings: VerificationCacheSettings())
            let verifier = TokenVerifier(store: store, cache: cache, lookupTimeout: .seconds(60))
            // Never run: the listener is down, so no barrier can be confirmed.
            let listener = InvalidationListener(
                configuration: try url.connectionConfiguration(), verifier: verifier, logger: logger)
            func cached(_ secret: String) -> Bool {
                cache.lookup(try! TokenSecret(parsing: secret).hash, now: Date()) != nil
            }
            for secret in [boot.token.plaintext, other.plaintext] { _ = await verifier.verify(secret) }
            #expect(cached(boot.token.plaintext) && cached(other.plaintext))

            let described = WriteJournal()
            WriteJournal.$current.withValue(described) { WriteJournal.note(.token(boot.tokenUUID)) }
            await listener.barrier(using: client, journal: described)
            #expect(!cached(boot.token.plaintext), "the written token left the cache")
            #expect(cached(other.plaintext), "the other one stayed")

            await listener.barrier(using: client, journal: WriteJournal())  // a write that said nothing
            #expect(!cached(other.plaintext), "an undescribed write drops everything")
        }
    }
}
