import Foundation
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TesseraPostgres

/// LISTENs on `tessera_invalidation` (notifications sent by the triggers of migration 0004 at
/// commit) on a connection of its own and drops the cache entries each one covers. Reconnects by
/// itself with backoff; on every (re)connect it reads every cached answer again on that
/// connection and drops those that changed (``TokenVerifier/confirmCache(on:logger:)``), since
/// notifications sent while it was away are lost. The cache TTL bounds staleness if one is lost
/// some other way.
public final class InvalidationListener: Service, Sendable {
    public static let channel = "tessera_invalidation"
    public static let applicationName = "tessera-invalidation-listener"

    private let configuration: PostgresConnection.Configuration
    private let verifier: TokenVerifier
    private let logger: Logger
    private let state = Mutex(State())
    private let lag = Timer(
        label: "tessera_invalidation_lag_seconds", dimensions: [], preferredDisplayUnit: .seconds,
        factory: TesseraMetrics.factory)
    private let received = TesseraMetrics.counter("tessera_invalidation_notifications_total")
    private let connected = TesseraMetrics.gauge("tessera_invalidation_listener_connected")
    private let confirmed = TesseraMetrics.counter("tessera_cache_reconnect_entries_total", [("outcome", "kept")])
    private let unconfirmed = TesseraMetrics.counter("tessera_cache_reconnect_entries_total", [("outcome", "dropped")])

    struct State {
        var connected = false
        /// Barrier markers this process sent and is waiting to see come back.
        var markers: [String: Marker] = [:]
    }

    enum Marker {
        case sent
        case arrived
        case awaited(CheckedContinuation<Bool, Never>)
    }

    /// How often the listener checks that a notification it sends comes back.
    let heartbeatInterval: Duration

    enum ListenerError: Error {
        case streamEnded
        case heartbeatLost
    }

    public init(
        configuration: PostgresConnection.Configuration, verifier: TokenVerifier, logger: Logger,
        heartbeatInterval: Duration = .seconds(10)
    ) {
        var configuration = configuration
        // Findable in pg_stat_activity (its last query is not always the LISTEN).
        configuration.options.additionalStartupParameters.append(("application_name", Self.applicationName))
        self.configuration = configuration
        self.verifier = verifier
        self.logger = logger
        self.heartbeatInterval = heartbeatInterval
        verifier.setHearing(false)
    }

    public var isConnected: Bool { state.withLock { $0.connected } }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var backoff = Duration.milliseconds(100)
            while !Task.isCancelled {
                do {
                    try await self.listenOnce()
                    backoff = .milliseconds(100)
                } catch {
                    if Task.isCancelled { break }
                    // A connection that was up starts the next attempt from the shortest wait.
                    if self.isConnected { backoff = .milliseconds(100) }
                    self.logger.warning(
                        "invalidation listener lost its database connection; reconnecting",
                        metadata: ["retryIn": "\(backoff)", "error": "\(String(describing: type(of: error)))"])
                }
                self.setConnected(false)
                self.verifier.standby?.fence(nil)  // notifications may be lost until we are back
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        setConnected(false)
    }

    private func listenOnce() async throws {
        let connection = try await PostgresConnection.connect(
            configuration: configuration, id: Int.random(in: 1..<Int.max), logger: logger)
        do {
            try await connection.listen(on: Self.channel) { notifications in
                // Anything may have changed while no one listened: every cached answer is read
                // again here (a notification arriving meanwhile waits in the stream and is
                // handled after), and the cache is whole-dropped only if that fails.
                do {
                    let (kept, dropped) = try await withTimeout(.seconds(10)) {
                        try await self.verifier.confirmCache(on: connection, logger: self.logger)
                    }
                    confirmed.increment(by: Int64(kept))
                    unconfirmed.increment(by: Int64(dropped))
                    logger.debug(
                        "cache confirmed after (re)connecting", metadata: ["kept": "\(kept)", "dropped": "\(dropped)"])
                } catch {
                    verifier.invalidateAll()
                    if connection.isClosed { throw error }
                    logger.warning(
                        "could not confirm the cache after (re)connecting; dropped it",
                        metadata: ["error": "\(describeDatabaseFailure(error))"])
                }
                try await settleFences(on: connection)
                setConnected(true)
                logger.debug("invalidation listener connected")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await notification in notifications {
                            if self.handle(notification.payload) { try await self.settleFences(on: connection) }
                        }
                        throw ListenerError.streamEnded
                    }
                    // A half-open connection (no RST) would leave us "connected" and deaf: a
                    // marker sent through the pool must come back, or we reconnect.
                    group.addTask {
                        while true {
                            try await Task.sleep(for: self.heartbeatInterval)
                            guard await self.roundTrip() else { throw ListenerError.heartbeatLost }
                        }
                    }
                    _ = try await group.next()
                    group.cancelAll()
                }
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    private func setConnected(_ value: Bool) {
        let waiting = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.connected = value
            verifier.setHearing(value)
            guard !value else { return [] }
            defer { state.markers = [:] }
            return state.markers.values.compactMap {
                if case .awaited(let continuation) = $0 { return continuation }
                return nil
            }
        }
        for continuation in waiting { continuation.resume(returning: false) }
        connected.record(value ? 1 : 0)
    }

    /// With standby reads, the fences just marked take the primary's position, read now on the
    /// listener's own connection: at or past the end of every commit whose NOTIFY has arrived.
    private func settleFences(on connection: PostgresConnection) async throws {
        guard let standby = verifier.standby else { return }
        // Bounded: on a connection that just broke the query may never answer, and the listener
        // must notice and reconnect rather than wait (a deaf listener is a stale cache).
        let logger = self.logger
        standby.settle(
            at: try await withTimeout(.seconds(2)) { try await currentWALPosition(on: connection, logger: logger) })
    }

    /// `t|u|o:<uuid>:<micros>`, or `sync:<marker>` (a barrier of this or another replica).
    /// True when it invalidated something (and fenced it, with standby reads).
    @discardableResult
    func handle(_ payload: String) -> Bool {
        received.increment()
        let parts = payload.split(separator: ":")
        if parts.count == 2, parts[0] == "sync" {
            let continuation = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                let key = String(parts[1])
                switch state.markers[key] {
                case .sent: state.markers[key] = .arrived
                case .awaited(let continuation):
                    state.markers[key] = nil
                    return continuation
                case .arrived, nil: break  // another replica's marker
                }
                return nil
            }
            continuation?.resume(returning: true)
            return false
        }
        guard parts.count == 3, let id = UUID(uuidString: String(parts[1])) else {
            logger.warning("ignoring an unexpected invalidation payload; dropping the whole cache")
            verifier.invalidateAll()
            return true
        }
        switch parts[0] {
        case "t": verifier.invalidate(.token(id))
        case "u": verifier.invalidate(.user(id))
        case "o": verifier.invalidate(.organization(id))
        default: verifier.invalidateAll()
        }
        if let micros = Int64(parts[2]) {
            let nowMicros = Int64(Date().timeIntervalSince1970 * 1_000_000)
            lag.recordNanoseconds(max(0, nowMicros - micros) * 1000)
        }
        return true
    }

    /// Returns once this replica's cache has seen every notification committed before the call:
    /// it sends a marker through the same channel and waits for it (PostgreSQL delivers
    /// notifications in commit order). A write route awaits this before answering, so the next
    /// verification on this replica already sees the write. When the listener is down or the
    /// marker is late (2 s), what the write touched (`journal`) is dropped instead, or the whole
    /// cache when that is not known: never stale, at worst cold.
    public func barrier(using client: PostgresClient, journal: WriteJournal? = nil) async {
        // Bounded as a whole: the marker's own statement can hang on a stuck connection.
        let arrived = (try? await withTimeout(.seconds(3)) { await self.roundTrip(using: client) }) ?? false
        guard !arrived else { return }
        if let targets = journal?.targets {
            for target in targets { verifier.invalidate(target) }
        } else {
            verifier.invalidateAll()
        }
    }

    /// Sends a `sync:` marker through `client` (default: the verifier's pool) and waits up to
    /// 2 s for this listener to receive it. False when disconnected, failed or late.
    func roundTrip(using client: PostgresClient? = nil) async -> Bool {
        let client = client ?? verifier.store.client
        guard isConnected else { return false }
        let marker = UUID().uuidString.lowercased()
        let registered = state.withLock { state -> Bool in
            guard state.connected else { return false }
            state.markers[marker] = .sent
            return true
        }
        guard registered else { return false }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let early = self.state.withLock { state -> Bool? in
                        switch state.markers[marker] {
                        case .sent:
                            state.markers[marker] = .awaited(continuation)
                            return nil
                        case .arrived:
                            state.markers[marker] = nil
                            return true
                        case .awaited, nil:
                            return false  // timed out or disconnected already
                        }
                    }
                    if let early { continuation.resume(returning: early) }
                }
            }
            group.addTask {
                do {
                    try await client.query(
                        "SELECT pg_notify(\(Self.channel), \("sync:" + marker))", logger: self.logger)
                    try await Task.sleep(for: .seconds(2))
                } catch {}
                // Late or failed: release the waiter (a no-op when it already resumed).
                let continuation = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
                    defer { state.markers[marker] = nil }
                    if case .awaited(let continuation) = state.markers[marker] { return continuation }
                    return nil
                }
                continuation?.resume(returning: false)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

/// What a write request changed, as far as the verification cache is concerned. The cache
/// barrier uses it when the listener cannot confirm the write (it is reconnecting, or the
/// database went away right after the commit): then only the entries the write touched are
/// dropped, rather than the whole cache, so cached tokens keep verifying through an outage.
/// A write that notes nothing falls back to dropping everything.
public final class WriteJournal: Sendable {
    @TaskLocal public static var current: WriteJournal?

    private struct State {
        var described = false
        var targets: [VerificationCache.Target] = []
    }
    private let state = Mutex(State())

    public init() {}

    /// The running request's write touched these entries (none: a new token, which no cache holds).
    public static func note(_ targets: VerificationCache.Target...) {
        current?.state.withLock { state in
            state.described = true
            state.targets += targets
        }
    }

    /// The entries to drop, or nil for the whole cache.
    public var targets: [VerificationCache.Target]? {
        state.withLock { $0.described ? $0.targets : nil }
    }
}
