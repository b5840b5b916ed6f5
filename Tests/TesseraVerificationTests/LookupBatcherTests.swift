import Foundation
import Synchronization
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

/// Coalesced verification misses (issue #14): every caller gets its own answer or the statement's
/// error, batches form only when the slots are taken, and a batched miss that races a revocation
/// does not cache the revoked token.
@Suite struct LookupBatcherTests {
    /// A gate a statement waits at until the test opens it.
    final class Gate: Sendable {
        private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>], arrived: Int)>(
            (false, [], 0))
        func wait() async {
            await withCheckedContinuation { continuation in
                let open = state.withLock { state -> Bool in
                    state.arrived += 1
                    if !state.open { state.waiters.append(continuation) }
                    return state.open
                }
                if open { continuation.resume() }
            }
        }
        var arrived: Int { state.withLock { $0.arrived } }
        func open() {
            for waiter in state.withLock({ state -> [CheckedContinuation<Void, Never>] in
                state.open = true
                defer { state.waiters = [] }
                return state.waiters
            }) { waiter.resume() }
        }
    }

    static func eventually(_ condition: () -> Bool) async throws {
        for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
        #expect(condition())
    }

    @Test func everyCallerGetsItsOwnAnswerAndBatchesFormUnderLoad() async throws {
        let batches = Mutex<[[Int]]>([])
        let batcher = LookupBatcher<Int, String>(maxInFlight: 2) { keys in
            batches.withLock { $0.append(keys) }
            try await Task.sleep(for: .milliseconds(2))
            return Dictionary(uniqueKeysWithValues: Set(keys).filter { $0 % 7 != 0 }.map { ($0, "value \($0)") })
        }
        try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for key in 0..<500 { group.addTask { (key, try await batcher.lookUp(key % 250)) } }
            for try await (key, answer) in group {
                #expect(answer == (key % 250 % 7 == 0 ? nil : "value \(key % 250)"))
            }
        }
        let sizes = batches.withLock { $0.map(\.count) }
        #expect(sizes.reduce(0, +) == 500)
        #expect(sizes.contains { $0 > 1 }, "500 concurrent lookups on 2 slots form batches")
        #expect(sizes.max()! <= 128)
    }

    @Test func aFailedStatementFailsEveryCallerInItAndTheNextOnesStillRun() async throws {
        struct Boom: Error {}
        let gate = Gate()
        let calls = Mutex(0)
        let batcher = LookupBatcher<Int, Int>(maxInFlight: 1) { keys in
            let call = calls.withLock {
                $0 += 1; return $0
            }
            if call == 1 { await gate.wait() }
            if call == 2 { throw Boom() }
            return Dictionary(uniqueKeysWithValues: keys.map { ($0, $0) })
        }
        async let first = batcher.lookUp(1)
        try await Self.eventually { gate.arrived == 1 }
        func attempt(_ key: Int) async -> Bool { (try? await batcher.lookUp(key)) != nil }
        async let second = attempt(2)
        async let third = attempt(3)
        try await Task.sleep(for: .milliseconds(50))  // both queue behind the held slot
        gate.open()
        #expect(try await first == 1)
        let (two, three) = await (second, third)
        #expect(!two && !three, "one statement carried both and failed")
        #expect(try await batcher.lookUp(4) == 4)
    }

    @Test func aBatchedMissThatRacesARevocationIsNotCached() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            let secret = boot.token.plaintext
            // The first statement is held before it runs; the second is held after it has read
            // the rows, until the revocation has been committed and announced.
            let beforeFirst = Gate()
            let afterRead = Gate()
            let calls = Mutex(0)
            let cache = VerificationCache(settings: VerificationCacheSettings())
            // No lookup timeout: the gates hold statements for as long as the test needs.
            let verifier = TokenVerifier(store: store, cache: cache, lookupTimeout: nil, lookupsInFlight: 1) { hashes in
                let call = calls.withLock {
                    $0 += 1; return $0
                }
                if call == 1 { await beforeFirst.wait() }
                let states = try await store.storedStates(of: hashes)
                if call == 2 { await afterRead.wait() }
                return states
            }
            let unknown = TokenSecret.generate(kind: .organization).plaintext
            async let holder = verifier.verify(unknown)
            try await Self.eventually { beforeFirst.arrived == 1 }
            async let first = verifier.verify(secret)
            async let second = verifier.verify(secret)
            try await Task.sleep(for: .milliseconds(50))
            beforeFirst.open()
            try await Self.eventually { afterRead.arrived == 1 }
            #expect(calls.withLock { $0 } == 2, "both misses rode one statement")

            try await client.query(
                "UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'deleted_by_admin' WHERE id = \(boot.tokenUUID)"
            )
            verifier.invalidate(.token(boot.tokenUUID))
            afterRead.open()
            _ = await holder
            for outcome in [await first, await second] {
                guard case .verified = outcome else {
                    Issue.record("the statement read the token before the revocation: \(outcome)")
                    continue
                }
            }
            guard case .failed(.revoked) = await verifier.verify(secret) else {
                Issue.record("the revoked token was served from the cache")
                return
            }
        }
    }
}
