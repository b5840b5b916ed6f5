import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TesseraCore
import TesseraPostgres

/// Verification misses on a PostgreSQL connection of their own (issue #24).
///
/// Misses queue here. One statement (``TokenStateStatement``, `secret_hash = ANY($1)`) runs at a
/// time, for up to `maxBatch` queued misses; when it answers, the next statement goes out from the
/// connection's event loop in the same callback, before the answers are handed back. Through the
/// pool, each statement cost a lease, an idle timer the pool arms whenever a connection goes idle,
/// a timeout task and a hop to wake the next statement's leader; every one of those ran on the
/// same two cores as the misses themselves and PostgreSQL, and the statement waited for all of them.
///
/// A failure never leaves a miss stranded: every miss of a failed statement gets the error
/// (``TokenVerifier`` asks the pool instead, unless the statement timed out), the connection is
/// closed, and the next miss opens a new one. A statement that takes longer than `timeout` fails
/// its misses at the deadline with ``TimeoutError``; an opening that does, with an error of its own.
public final class LookupConnection: Service, Sendable {
    /// Findable in pg_stat_activity.
    public static let applicationName = "tessera-verification-lookups"

    private struct Waiter: Sendable {
        let hash: TokenHash
        let continuation: CheckedContinuation<StoredTokenState?, any Error>
    }

    private enum Link: Sendable {
        case closed
        /// The number tells an opening from one that gave up at its deadline.
        case opening(Int)
        case open(PostgresConnection, PreparedQuery?)
        case shutDown
    }

    private struct State: Sendable {
        var queue = CircularBuffer<Waiter>()
        var link = Link.closed
        /// A statement is running or the connection is being opened: the queue is being served.
        var serving = false
        /// When opening last failed: for a second after, misses go straight to the pool.
        var openFailed: ContinuousClock.Instant?
        var openings = 0

        mutating func beginOpening() -> Int {
            openings += 1
            link = .opening(openings)
            return openings
        }
    }

    private let state = Mutex(State())
    private let configuration: PostgresConnection.Configuration
    private let statements: StatementMode
    private let timeout: Duration?
    private let openingTimeout: Duration?
    private let maxBatch: Int
    private let logger: Logger

    /// `timeout` bounds each statement, and each opening unless `openingTimeout` is given.
    public init(
        configuration: PostgresConnection.Configuration, statements: StatementMode = .prepared,
        timeout: Duration? = .seconds(1), openingTimeout: Duration? = nil, maxBatch: Int = 128, logger: Logger
    ) {
        precondition(maxBatch >= 1)
        var configuration = configuration
        configuration.options.additionalStartupParameters.append(("application_name", Self.applicationName))
        self.configuration = configuration
        self.statements = statements
        self.timeout = timeout
        self.openingTimeout = openingTimeout ?? timeout
        self.maxBatch = maxBatch
        self.logger = logger
    }

    /// The stored facts of the token with this hash, or nil when there is none.
    public func lookUp(_ hash: TokenHash) async throws -> StoredTokenState? {
        try await withCheckedThrowingContinuation { continuation in
            enum Next { case wait, open(Int), send(PostgresConnection, PreparedQuery?), refuse }
            let next = state.withLock { state -> Next in
                switch state.link {
                case .shutDown: return .refuse
                case .closed:
                    if let failed = state.openFailed, failed.duration(to: .now) < .seconds(1) { return .refuse }
                case .opening, .open: break
                }
                state.queue.append(Waiter(hash: hash, continuation: continuation))
                guard !state.serving else { return .wait }
                state.serving = true
                switch state.link {
                case .open(let connection, let prepared): return .send(connection, prepared)
                case .closed: return .open(state.beginOpening())
                case .opening, .shutDown: return .wait
                }
            }
            switch next {
            case .wait: break
            case .open(let attempt): open(attempt)
            case .send(let connection, let prepared): send(on: connection, prepared)
            case .refuse: continuation.resume(throwing: ConnectionClosedError())
            }
        }
    }

    /// Opens the connection at once (the first miss need not wait for it), runs until graceful
    /// shutdown, then closes.
    public func run() async throws {
        let attempt = state.withLock { state -> Int? in
            guard case .closed = state.link, !state.serving else { return nil }
            state.serving = true
            return state.beginOpening()
        }
        if let attempt { open(attempt) }
        try? await gracefulShutdown()
        await close()
    }

    /// Closes the connection and fails what still waits; later misses are refused (the verifier
    /// asks the pool).
    public func close() async {
        let (connection, waiters) = state.withLock { state -> (PostgresConnection?, [Waiter]) in
            var connection: PostgresConnection?
            if case .open(let open, _) = state.link { connection = open }
            state.link = .shutDown
            defer { state.queue.removeAll() }
            return (connection, Array(state.queue))
        }
        for waiter in waiters { waiter.continuation.resume(throwing: ConnectionClosedError()) }
        try? await connection?.close()
    }

    /// Opens the connection (and prepares the statement) for the misses waiting and those that
    /// come meanwhile. At the deadline they are handed to the pool; a connection that opens after
    /// it is closed.
    private func open(_ attempt: Int) {
        let timer = openingTimeout.map { timeout in
            MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(timeout)) {
                self.failOpening(attempt, TimeoutError(duration: timeout))
            }
        }
        Task {
            let connection: PostgresConnection
            let prepared: PreparedQuery?
            do {
                connection = try await PostgresConnection.connect(
                    configuration: configuration, id: Int.random(in: 1..<Int.max), logger: logger)
            } catch {
                timer?.cancel()
                return failOpening(attempt, error)
            }
            do {
                prepared =
                    switch statements {
                    case .prepared: try await connection.prepare(query: TokenStateStatement.sql).get()
                    case .unnamed: nil
                    }
            } catch {
                timer?.cancel()
                try? await connection.close()
                return failOpening(attempt, error)
            }
            timer?.cancel()
            let current = state.withLock { state -> Bool in
                guard case .opening(attempt) = state.link else { return false }
                state.link = .open(connection, prepared)
                state.openFailed = nil
                return true
            }
            guard current else {
                try? await connection.close()
                return
            }
            send(on: connection, prepared)
        }
    }

    /// The opening numbered `attempt` failed or passed its deadline: what waits goes to the pool.
    private func failOpening(_ attempt: Int, _ error: any Error) {
        let waiters = state.withLock { state -> [Waiter]? in
            guard case .opening(attempt) = state.link else { return nil }
            state.link = .closed
            state.openFailed = .now
            state.serving = false
            defer { state.queue.removeAll() }
            return Array(state.queue)
        }
        guard let waiters else { return }
        logger.warning(
            "verification lookups: could not open their connection",
            metadata: ["error": "\(describeDatabaseFailure(error))"])
        // Even a timed-out opening lets the pool answer: only a statement that hangs fails closed.
        for waiter in waiters { waiter.continuation.resume(throwing: OpeningFailed(error: error)) }
    }

    /// One statement for the misses at the head of the queue, or the end of serving when none
    /// wait. Runs on any thread; the next call comes from the connection's event loop.
    private func send(on connection: PostgresConnection, _ prepared: PreparedQuery?) {
        let batch = state.withLock { state -> [Waiter] in
            let count = min(state.queue.count, maxBatch)
            var batch: [Waiter] = []
            batch.reserveCapacity(count)
            for _ in 0..<count { batch.append(state.queue.removeFirst()) }
            if batch.isEmpty { state.serving = false }
            return batch
        }
        guard !batch.isEmpty else { return }
        LookupBatcherMetrics.statements.increment()
        LookupBatcherMetrics.keys.increment(by: Int64(batch.count))
        // Once, by whichever comes first: the answer or the timer.
        let settled = Once()
        let fail: @Sendable (any Error) -> Void = { error in
            self.drop(connection)
            for waiter in batch { waiter.continuation.resume(throwing: error) }
        }
        // PostgresNIO drops a statement written to a closed channel without failing it.
        guard !connection.isClosed else { return fail(ConnectionClosedError()) }
        let timer = timeout.map { timeout in
            connection.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
                if settled.claim() { fail(TimeoutError(duration: timeout)) }
            }
        }
        statement(for: batch.map(\.hash), on: connection, prepared).whenComplete { result in
            timer?.cancel()
            guard settled.claim() else { return }
            switch result.flatMap({ rows in Result { try Self.states(rows, binary: prepared != nil) } }) {
            case .success(let states):
                self.send(on: connection, prepared)
                for waiter in batch { waiter.continuation.resume(returning: states[waiter.hash]) }
            case .failure(let error):
                fail(error)
            }
        }
    }

    private func statement(
        for hashes: [TokenHash], on connection: PostgresConnection, _ prepared: PreparedQuery?
    ) -> EventLoopFuture<[PostgresRow]> {
        if let prepared {
            return prepared.execute([
                PostgresData(array: hashes.map { PostgresData(bytes: $0.bytes) }, elementType: .bytea)
            ])
        }
        do {
            return connection.query(try TokenStateStatement(hashes: hashes).unnamed(), logger: logger).map(\.rows)
        } catch {
            return connection.eventLoop.makeFailedFuture(error)
        }
    }

    /// After a failed statement: the connection is closed and the next waiter, if any, opens a
    /// new one. Only the statement in flight calls this, once, while its connection is the open one.
    private func drop(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in }
        let reopen = state.withLock { state -> Int? in
            guard case .open(let current, _) = state.link, current === connection else { return nil }
            state.link = .closed
            guard !state.queue.isEmpty else {
                state.serving = false
                return nil
            }
            return state.beginOpening()
        }
        if let reopen { open(reopen) }
    }

    private static func states(_ rows: [PostgresRow], binary: Bool) throws -> [TokenHash: StoredTokenState] {
        var states: [TokenHash: StoredTokenState] = [:]
        states.reserveCapacity(rows.count)
        for row in rows {
            let cells = row.makeRandomAccess()
            let decoded =
                binary ? try TokenStateStatement.decode(BinaryCells(cells)) : try TokenStateStatement.decode(cells)
            if let (hash, state) = decoded { states[hash] = state }
        }
        return states
    }
}

/// Rows of a statement prepared through PostgresNIO's `prepare(query:)`: the server sends every
/// column in binary (PostgresNIO always asks for binary results), but the rows carry the
/// description from the statement's Describe, taken before formats are chosen, which says text.
private struct BinaryCells: TokenStateCells {
    let row: PostgresRandomAccessRow
    init(_ row: PostgresRandomAccessRow) { self.row = row }

    subscript(_ index: Int) -> PostgresCell {
        var cell = row[index]
        cell.format = .binary
        return cell
    }
}

/// The lookup connection could not be opened (the verifier asks the pool).
struct OpeningFailed: Error {
    let error: any Error
}

/// True for the first caller of ``claim()`` only.
private final class Once: Sendable {
    private let claimed = Atomic<Bool>(false)
    func claim() -> Bool { !claimed.exchange(true, ordering: .acquiringAndReleasing) }
}
