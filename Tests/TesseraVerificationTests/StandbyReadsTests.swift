import Foundation
import Synchronization
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

/// The LSN fence of standby reads (issue #15), with the test database standing in for the
/// standby (`tessera_standby_token_states` answers with the primary's position there): a fenced
/// row goes to the primary until the fence is settled at or below what the "standby" has seen,
/// unknowns are re-checked on the primary within the budget, and both statement modes work.
@Suite struct StandbyReadsTests {
    @Test(arguments: StatementMode.allCases)
    func fencedRowsAndUnknownsGoToThePrimary(mode: StatementMode) async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger, statements: mode)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            let hash = try TokenSecret(parsing: boot.token.plaintext).hash
            let asked = Mutex<[[TokenHash]]>([])
            let primary: ([TokenHash]) async throws -> [TokenHash: StoredTokenState] = { hashes in
                asked.withLock { $0.append(hashes) }
                return try await store.storedStates(of: hashes)
            }
            let reads = StandbyReads(standby: client, logger: logger, statements: mode, recheckPerSecond: 2)

            // Before the listener has connected everything is fenced (pending).
            var answers = try await reads.lookUp([hash], primary: primary)
            #expect(answers[hash]?.token.tokenID == boot.tokenUUID)
            #expect(asked.withLock { $0 } == [[hash]], "pending global fence: asked the primary")

            // Settled at a position the "standby" has passed: served by the standby.
            let position = try await client.withConnection { try await currentWALPosition(on: $0, logger: logger) }
            reads.settle(at: position)
            answers = try await reads.lookUp([hash], primary: primary)
            #expect(answers[hash]?.token.tokenID == boot.tokenUUID)
            #expect(asked.withLock { $0.count } == 1, "served by the standby")

            func viaPrimary() async throws -> Bool {
                let before = asked.withLock { $0.count }
                _ = try await reads.lookUp([hash], primary: primary)
                return asked.withLock { $0.count } > before
            }
            // The token, its owner or its org fenced beyond the standby's position: the primary.
            for target in [VerificationCache.Target.token(boot.tokenUUID), .organization(answers[hash]!.token.orgID)] {
                reads.fence(target)
                #expect(try await viaPrimary(), "\(target) pending")
                reads.settle(at: position + 1 << 40)
                #expect(try await viaPrimary(), "\(target) fenced ahead of the standby")
                reads.settle(at: position)
                #expect(try await viaPrimary(), "a settled fence does not move back")
                reads.fence(nil)
                reads.settle(at: position)
                #expect(try await !viaPrimary(), "a drop-all replaces the keys by one settled global fence")
            }

            // Unknowns: re-checked on the primary within the budget (2 a second), the rest stand.
            let unknowns = (0..<10).map { _ in TokenSecret.generate(kind: .organization).hash }
            let before = asked.withLock { $0.count }
            answers = try await reads.lookUp(unknowns, primary: primary)
            #expect(answers.isEmpty)
            #expect(asked.withLock { $0.count } == before + 1)
            #expect(asked.withLock { $0.last?.count } == 2, "two of ten unknowns re-checked")
        }
    }
}
