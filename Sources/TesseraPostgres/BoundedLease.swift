import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

extension TesseraStore {
    /// Leases a pooled connection for `body`, waiting at most ``leaseTimeout`` for one.
    ///
    /// PostgresNIO's pool keeps a lease waiting while it fails to connect (until its circuit
    /// breaker trips after 60 s, and between attempts its backoff grows to a minute), so a
    /// management request during an outage or a failover would hang. Here it gets
    /// ``TimeoutError`` (503) instead. Only the wait for a connection is bounded: once `body`
    /// runs it is never cancelled, so a transaction always ends in COMMIT or ROLLBACK on its own
    /// connection and never goes back to the pool half done.
    public func withConnection<Result: Sendable>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        guard let leaseTimeout else { return try await client.withConnection(body) }
        let client = self.client
        return try await withoutActuallyEscaping(body) { body in
            // The group awaits both children before it returns, so `body` never outlives this call.
            let body = UncheckedSendableBox(body)
            let gate = LeaseGate()
            return try await withThrowingTaskGroup(of: Result?.self) { group in
                group.addTask {
                    try await client.withConnection { connection in
                        guard gate.claim() else { throw TimeoutError(duration: leaseTimeout) }
                        return try await body.value(connection)
                    }
                }
                group.addTask {
                    guard await gate.leased(within: leaseTimeout) else { throw TimeoutError(duration: leaseTimeout) }
                    return nil
                }
                while let next = try await group.next() {
                    if let result = next { return result }
                }
                throw CancellationError()  // unreachable: the lease child returns a value or throws
            }
        }
    }

    /// One statement on a connection leased as ``withConnection(_:)`` leases it.
    @discardableResult
    public func query(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        try await withConnection { connection in
            var rows: [PostgresRow] = []
            for try await row in try await connection.statement(query, logger: logger) { rows.append(row) }
            return rows
        }
    }
}

/// The race between a connection arriving and the lease deadline: the first to come decides.
/// A connection that arrives after the deadline is handed back unused.
private final class LeaseGate: Sendable {
    private enum State {
        case waiting(CheckedContinuation<Bool, Never>?, Scheduled<Void>?)
        case leased
        case expired
    }
    private let state = Mutex(State.waiting(nil, nil))

    /// The connection arrived: true unless the deadline passed first.
    func claim() -> Bool {
        let (won, waiter, timer) = state.withLock {
            state -> (Bool, CheckedContinuation<Bool, Never>?, Scheduled<Void>?) in
            guard case .waiting(let waiter, let timer) = state else { return (false, nil, nil) }
            state = .leased
            return (true, waiter, timer)
        }
        timer?.cancel()
        waiter?.resume(returning: true)
        return won
    }

    private func expire() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard case .waiting(let waiter, _) = state else { return nil }
            state = .expired
            return waiter
        }
        waiter?.resume(returning: false)
    }

    /// True once a connection is claimed; false at the deadline or on cancellation. The deadline
    /// is an event-loop timer (see ``withTimeout(_:_:)`` for why not `Task.sleep`).
    func leased(within duration: Duration) async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(duration)) {
                    self.expire()
                }
                let decided = state.withLock { state -> Bool? in
                    switch state {
                    case .waiting:
                        state = .waiting(continuation, timer)
                        return nil
                    case .leased: return true
                    case .expired: return false
                    }
                }
                if let decided {
                    timer.cancel()
                    continuation.resume(returning: decided)
                }
            }
        } onCancel: {
            expire()
        }
    }
}

/// Carries a non-Sendable closure into a child task that provably ends before the closure's
/// scope does (``TesseraStore/withConnection(_:)``).
private struct UncheckedSendableBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// A statement sent on a connection that had already closed.
public struct ConnectionClosedError: Error, CustomStringConvertible {
    public var description: String { "the database connection closed" }
    public init() {}
}

extension PostgresConnection {
    /// `query`, refusing a connection that has closed. PostgresNIO 1.33 writes a query to its
    /// channel without a write promise: on a channel already closed the write fails unseen and
    /// the query never answers. `make ha` caught it: a leader killed between a transaction's
    /// INSERT and its COMMIT left the COMMIT, and the request, waiting forever. Every statement of
    /// the management routes goes through here (the verification path has its own deadline).
    @discardableResult
    public func statement(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        guard !isClosed else { throw ConnectionClosedError() }
        return try await self.query(query, logger: logger)
    }
}
