import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

/// Verification misses on their own connection (issue #24): every miss gets its own answer in
/// both statement modes, a lost connection is replaced, a stuck statement fails closed at its
/// deadline, and a connection that cannot open hands the misses to the pool.
@Suite struct LookupConnectionTests {
    @Test(arguments: StatementMode.allCases)
    func everyMissGetsItsOwnAnswer(_ mode: StatementMode) async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            // Generous deadlines: the suite shares two cores with everything else that runs.
            let lookups = LookupConnection(
                configuration: try url.connectionConfiguration(), statements: mode, timeout: .seconds(30), maxBatch: 7,
                logger: logger)
            let unknown = (0..<20).map { _ in TokenSecret.generate(kind: .organization).hash }
            try await withThrowingTaskGroup(of: (TokenHash, StoredTokenState?).self) { group in
                for round in 0..<10 {
                    group.addTask { (boot.token.hash, try await lookups.lookUp(boot.token.hash)) }
                    for hash in unknown[(round * 2)..<(round * 2 + 2)] {
                        group.addTask { (hash, try await lookups.lookUp(hash)) }
                    }
                }
                for try await (hash, state) in group {
                    if hash == boot.token.hash {
                        #expect(state?.token.tokenID == boot.tokenUUID && state?.status == .active)
                        #expect(state?.token.orgSlug == "acme" && state?.ownerIsActiveMember == true)
                    } else {
                        #expect(state == nil)
                    }
                }
            }
            #expect(try await Self.backends(client) == 1, "one connection of its own")
            await lookups.close()
        }
    }

    @Test func aKilledConnectionIsReplaced() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            let lookups = LookupConnection(
                configuration: try url.connectionConfiguration(), timeout: .seconds(30), logger: logger)
            #expect(try await lookups.lookUp(boot.token.hash) != nil)
            try await client.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = \(LookupConnection.applicationName)"
            )
            // The first miss after the kill may meet the dead connection (and fail: the verifier
            // then asks the pool); the ones after it run on a new connection.
            _ = try? await lookups.lookUp(boot.token.hash)
            #expect(try await lookups.lookUp(boot.token.hash)?.token.tokenID == boot.tokenUUID)
            #expect(try await Self.backends(client) == 1)
            await lookups.close()
        }
    }

    @Test func aStuckStatementFailsAtItsDeadlineAndTheNextMissGetsAnswered() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            // The statement's deadline is short; opening may take long on a loaded machine.
            let lookups = LookupConnection(
                configuration: try url.connectionConfiguration(), timeout: .milliseconds(300),
                openingTimeout: .seconds(30), logger: logger)
            #expect(try await lookups.lookUp(boot.token.hash)?.token.tokenID == boot.tokenUUID)
            let locker = try await PostgresConnection.connect(
                configuration: try url.connectionConfiguration(), id: 1, logger: logger)
            try await locker.query("BEGIN", logger: logger)
            try await locker.query("LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE", logger: logger)
            let started = ContinuousClock.now
            await #expect(throws: TimeoutError.self) { try await lookups.lookUp(boot.token.hash) }
            #expect(started.duration(to: .now) < .seconds(5))
            try await locker.query("ROLLBACK", logger: logger)
            try await locker.close()
            #expect(try await lookups.lookUp(boot.token.hash)?.token.tokenID == boot.tokenUUID)
            await lookups.close()
        }
    }

    @Test func anOpeningPastItsDeadlineIsClosedWhenItArrives() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            // No connection opens within a millisecond: the miss is handed back at the deadline
            // and the connection, when it arrives, is closed rather than left open (PostgresNIO
            // traps on a connection dropped unclosed in debug builds).
            let lookups = LookupConnection(
                configuration: try url.connectionConfiguration(), timeout: .milliseconds(1), logger: logger)
            await #expect(throws: (any Error).self) { try await lookups.lookUp(boot.token.hash) }
            var gone = false
            for _ in 0..<50 where !gone {
                try await Task.sleep(for: .milliseconds(100))
                gone = try await Self.backends(client) == 0
            }
            #expect(gone, "the late connection was closed")
            await lookups.close()
        }
    }

    @Test func whenItCannotOpenThePoolAnswers() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            // Nothing listens on port 1: refused at once.
            let nowhere = try DatabaseURL("postgres://tessera@127.0.0.1:1/tessera").connectionConfiguration()
            let lookups = LookupConnection(configuration: nowhere, logger: logger)
            await #expect(throws: (any Error).self) { try await lookups.lookUp(boot.token.hash) }
            let verifier = TokenVerifier(
                store: store, cache: VerificationCache(settings: .init()), lookupTimeout: .seconds(30),
                lookups: lookups)
            guard case .verified(let token, _) = await verifier.verify(boot.token.plaintext) else {
                Issue.record("the pool answers when the lookup connection cannot open")
                return
            }
            #expect(token.tokenID == boot.tokenUUID)
            await lookups.close()
        }
    }

    /// Backends of this database that are the lookup connection.
    static func backends(_ client: PostgresClient) async throws -> Int {
        let rows = try await client.query(
            "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND application_name = \(LookupConnection.applicationName)"
        )
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }
}
