import Metrics
import NIOCore
import Synchronization
import TesseraPostgres

/// `tessera_verify_lookups_total` (statements) and `tessera_verify_lookup_keys_total` (hashes they
/// carried): their quotient is the mean batch size.
enum LookupBatcherMetrics {
    static let statements = TesseraMetrics.counter("tessera_verify_lookups_total")
    static let keys = TesseraMetrics.counter("tessera_verify_lookup_keys_total")
}

/// Coalesces concurrent verification misses into shared statements (issue #14).
///
/// At most `maxInFlight` lookups run at once. A miss that finds a free slot runs at once, alone:
/// no added latency when the load is light. A miss that finds every slot taken waits in a queue;
/// when a lookup finishes, the first waiter takes the slot and runs one statement
/// (`secret_hash = ANY($1)`) for itself and up to `maxBatch - 1` waiters behind it. So the batch
/// size follows the load by itself, and PostgreSQL's per-statement cost and the pool's per-lease
/// cost are shared by every miss that arrived while the database was busy.
///
/// A waiter joins only a statement that has not been sent yet, never one in flight: its caller
/// read the cache generation before it queued, so an invalidation that lands while the statement
/// runs still keeps the answer out of the cache (``VerificationCache/store(_:for:now:generation:)``).
public final class LookupBatcher<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private enum Wake: Sendable {
        case answered(Value?)
        case failed(any Error)
        /// The slot is this waiter's: it runs the next statement.
        case lead
    }

    private struct Waiter: Sendable {
        let key: Key
        let continuation: CheckedContinuation<Wake, Never>
    }

    private struct State: Sendable {
        var inFlight = 0
        var queue = CircularBuffer<Waiter>()
    }

    private let state = Mutex(State())
    private let lookUpMany: @Sendable ([Key]) async throws -> [Key: Value]
    public let maxInFlight: Int
    public let maxBatch: Int

    public init(
        maxInFlight: Int, maxBatch: Int = 128,
        lookUpMany: @escaping @Sendable ([Key]) async throws -> [Key: Value]
    ) {
        precondition(maxInFlight >= 1 && maxBatch >= 1)
        self.maxInFlight = maxInFlight
        self.maxBatch = maxBatch
        self.lookUpMany = lookUpMany
    }

    /// The value for `key`, or nil when there is none.
    public func lookUp(_ key: Key) async throws -> Value? {
        if takeSlot() { return try await lead(key) }
        let wake = await withCheckedContinuation { (continuation: CheckedContinuation<Wake, Never>) in
            let queued = state.withLock { state -> Bool in
                // A slot may have come free since `takeSlot`.
                guard state.inFlight >= maxInFlight else {
                    state.inFlight += 1
                    return false
                }
                state.queue.append(Waiter(key: key, continuation: continuation))
                return true
            }
            if !queued { continuation.resume(returning: .lead) }
        }
        switch wake {
        case .answered(let answer): return answer
        case .failed(let error): throw error
        case .lead: return try await lead(key)
        }
    }

    private func takeSlot() -> Bool {
        state.withLock { state in
            guard state.inFlight < maxInFlight else { return false }
            state.inFlight += 1
            return true
        }
    }

    /// Holding a slot: one statement for `key` and the waiters at the head of the queue, then the
    /// slot goes to the next waiter (or is freed) before the answers go out.
    private func lead(_ key: Key) async throws -> Value? {
        let riders = state.withLock { state -> [Waiter] in
            let count = min(state.queue.count, maxBatch - 1)
            var riders: [Waiter] = []
            riders.reserveCapacity(count)
            for _ in 0..<count { riders.append(state.queue.removeFirst()) }
            return riders
        }
        var keys = [key]
        keys.reserveCapacity(riders.count + 1)
        for rider in riders { keys.append(rider.key) }
        LookupBatcherMetrics.statements.increment()
        LookupBatcherMetrics.keys.increment(by: Int64(keys.count))
        let answers: Result<[Key: Value], any Error>
        do {
            answers = .success(try await lookUpMany(keys))
        } catch {
            answers = .failure(error)
        }
        let next = state.withLock { state -> Waiter? in
            if state.queue.isEmpty {
                state.inFlight -= 1
                return nil
            }
            return state.queue.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        switch answers {
        case .success(let states):
            for rider in riders { rider.continuation.resume(returning: .answered(states[rider.key])) }
            return states[key]
        case .failure(let error):
            for rider in riders { rider.continuation.resume(returning: .failed(error)) }
            throw error
        }
    }
}
