import Synchronization
import TesseraPostgres
import Testing

/// `withTimeout` (an event-loop timer, issue #14): the answer when it comes in time, a
/// TimeoutError at the deadline even from an operation that ignores cancellation, and the
/// operation is cancelled. No timing assertions: the suite runs beside tests that keep the
/// executor busy, so "in time" is a minute and "at once" is "before the operation ends".
@Suite struct TimeoutTests {
    @Test func answersInTime() async throws {
        #expect(try await withTimeout(.seconds(60)) { 42 } == 42)
    }

    @Test func passesTheOperationsErrorOn() async throws {
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await withTimeout(.seconds(60)) { throw Boom() } }
    }

    @Test func givesUpAtTheDeadlineAndCancelsTheOperation() async throws {
        // The operation ignores cancellation until the caller has its TimeoutError: had
        // withTimeout waited for the operation, this would never end.
        let callerAnswered = Mutex(false)
        let sawCancellation = Mutex(false)
        await #expect(throws: TimeoutError.self) {
            try await withTimeout(.milliseconds(50)) {
                while !callerAnswered.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
                sawCancellation.withLock { $0 = Task.isCancelled }
                return 0
            }
        }
        callerAnswered.withLock { $0 = true }
        for _ in 0..<1000 where !sawCancellation.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(sawCancellation.withLock { $0 })
    }

    @Test func aCancelledCallerStopsWaiting() async throws {
        let task = Task {
            try await withTimeout(.seconds(30)) {
                try await Task.sleep(for: .seconds(30))
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
