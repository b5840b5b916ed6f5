import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TesseraCore
import TesseraPostgres

/// `TESSERA_WEBHOOKS_*` settings of the delivery service.
public struct WebhookSettings: Sendable {
    /// `TESSERA_WEBHOOKS` (on|off): this replica delivers webhooks and sweeps expiry notices.
    /// Off on every replica, events still queue up in the outbox; any replica that is on sends them.
    public var deliver = true
    /// `TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS`: allow loopback and private targets (tests).
    public var allowPrivateTargets = false
    /// How often an idle replica looks for due deliveries.
    public var pollInterval: Duration = .milliseconds(500)
    /// `TESSERA_WEBHOOKS_RETRY_BASE_MS`: the first retry waits this long; each next one twice as
    /// long (capped at an hour), ±20 % jitter.
    public var retryBase: Duration = .seconds(5)
    /// Retries stop once a delivery is this old (then it is `failed`; "redeliver" revives it).
    public var retryWindow: Duration = .seconds(26 * 3600)
    /// How long one attempt may take, connection included.
    public var requestTimeout: Duration = .seconds(10)
    /// Endpoints served at once by one replica; one delivery at a time per endpoint (per replica),
    /// oldest first.
    public var endpointsAtOnce = 8
    /// `TESSERA_EXPIRY_SWEEP_SECONDS`: how often expiry notices are looked for.
    public var expirySweepInterval: Duration = .seconds(60)

    public init() {}
}

/// Sends the outbox (``WebhookRecord``, migration 0009): claims due deliveries (several replicas
/// share the work with `FOR UPDATE SKIP LOCKED` and a 60 s claim), signs them the Standard
/// Webhooks way, POSTs them and records each outcome, retrying with exponential backoff and
/// jitter. Also runs the expiry sweep, which the database makes once-only per notice.
public final class WebhookDeliveryService: Service, Sendable {
    let store: TesseraStore
    let settings: WebhookSettings
    let policy: WebhookTargetPolicy
    let logger: Logger
    private static let claimLease: Duration = .seconds(60)

    private let delivered = TesseraMetrics.counter("tessera_webhook_deliveries_total", [("outcome", "delivered")])
    private let retried = TesseraMetrics.counter("tessera_webhook_deliveries_total", [("outcome", "retry")])
    private let failed = TesseraMetrics.counter("tessera_webhook_deliveries_total", [("outcome", "failed")])
    private let pending = TesseraMetrics.gauge("tessera_webhook_outbox_pending")
    private let oldest = TesseraMetrics.gauge("tessera_webhook_outbox_oldest_pending_seconds")
    private let notices = TesseraMetrics.counter("tessera_token_expiry_notices_total")

    public init(store: TesseraStore, settings: WebhookSettings, logger: Logger) {
        self.store = store
        self.settings = settings
        self.policy = WebhookTargetPolicy(allowPrivate: settings.allowPrivateTargets)
        self.logger = logger
    }

    public func run() async throws {
        let transport = WebhookTransport(timeout: settings.requestTimeout)
        await cancelWhenGracefulShutdown {
            var lastSweep: ContinuousClock.Instant?
            var lastGauge: ContinuousClock.Instant?
            while !Task.isCancelled {
                if lastSweep.map({ $0.duration(to: .now) >= self.settings.expirySweepInterval }) ?? true {
                    lastSweep = .now
                    await self.sweepExpiry()
                }
                if lastGauge.map({ $0.duration(to: .now) >= .seconds(5) }) ?? true {
                    lastGauge = .now
                    await self.updateGauges()
                }
                let worked = await self.deliverDue(using: transport)
                if !worked { try? await Task.sleep(for: self.settings.pollInterval) }
            }
        }
        await transport.shutdown()
    }

    /// Queues the expiry notices due now (the database decides, once per token and notice).
    public func sweepExpiry() async {
        do {
            let queued = try await store.withConnection { [store, logger] in
                try await WebhookRepository($0, logger: logger).sweepExpiry(at: store.clock.now())
            }
            if queued > 0 {
                notices.increment(by: Int64(queued))
                logger.info("queued token expiry notices", metadata: ["count": "\(queued)"])
            }
        } catch {
            logger.warning("expiry sweep failed", metadata: ["error": "\(describeDatabaseFailure(error))"])
        }
    }

    private func updateGauges() async {
        guard
            let (count, age) = try? await store.withConnection({ [logger] in
                try await WebhookRepository($0, logger: logger).outboxDepth()
            })
        else { return }
        pending.record(count)
        oldest.record(age)
    }

    /// Claims one batch and sends it; false when there was nothing due (or the database is away).
    func deliverDue(using transport: WebhookTransport) async -> Bool {
        let claimed: [ClaimedDelivery]
        do {
            claimed = try await store.withConnection { [logger] in
                try await WebhookRepository($0, logger: logger).claim(limit: 64, lease: Self.claimLease)
            }
        } catch {
            logger.debug("could not claim webhook deliveries", metadata: ["error": "\(describeDatabaseFailure(error))"])
            return false
        }
        guard !claimed.isEmpty else { return false }
        // One endpoint's deliveries in order, one at a time; endpoints side by side.
        let byEndpoint = Dictionary(grouping: claimed, by: \.webhookID).values.map {
            $0.sorted { $0.createdAt < $1.createdAt }
        }
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for deliveries in byEndpoint {
                if running == settings.endpointsAtOnce {
                    await group.next()
                    running -= 1
                }
                group.addTask { await self.send(deliveries, using: transport) }
                running += 1
            }
        }
        return true
    }

    /// One endpoint's claimed deliveries in order. After a failure (the endpoint is down or slow)
    /// or 30 s, the rest go back unsent: they are retried on their own schedule, and no claim
    /// runs out while its delivery is still queued here (which would let a second sender in).
    func send(_ deliveries: [ClaimedDelivery], using transport: WebhookTransport) async {
        let started = ContinuousClock.now
        for (index, delivery) in deliveries.enumerated() {
            guard await attempt(delivery, using: transport), started.duration(to: .now) < .seconds(30) else {
                let rest = deliveries[(index + 1)...].map(\.id)
                if !rest.isEmpty {
                    _ = try? await store.withConnection { [logger] in
                        try await WebhookRepository($0, logger: logger).release(rest)
                    }
                }
                return
            }
        }
    }

    /// One POST, and its outcome recorded; true when it was delivered.
    @discardableResult
    func attempt(_ delivery: ClaimedDelivery, using transport: WebhookTransport) async -> Bool {
        let (ok, status, failure) = await post(delivery, using: transport)
        let retryIn: Duration? = ok ? nil : nextRetry(after: delivery)
        if ok {
            delivered.increment()
        } else if retryIn == nil {
            failed.increment()
            logger.warning(
                "webhook delivery given up", metadata: ["delivery": "\(delivery.id)", "event": "\(delivery.event)"])
        } else {
            retried.increment()
        }
        do {
            try await store.withConnection { [logger] in
                try await WebhookRepository($0, logger: logger).recordAttempt(
                    deliveryID: delivery.id, delivered: ok, status: status, error: failure, retryIn: retryIn)
            }
        } catch {
            // The claim runs out and the delivery is sent again: at least once, as receivers expect.
            logger.warning(
                "could not record a webhook attempt", metadata: ["error": "\(describeDatabaseFailure(error))"])
        }
        return ok
    }

    /// The wait before the next attempt, or nil once the delivery is older than the retry window.
    func nextRetry(after delivery: ClaimedDelivery) -> Duration? {
        let age = store.clock.now().timeIntervalSince(delivery.retryFrom)
        guard age < Double(settings.retryWindow.components.seconds) else { return nil }
        let base =
            Double(settings.retryBase.components.seconds) + Double(settings.retryBase.components.attoseconds) / 1e18
        let wait = min(base * pow(2, Double(min(delivery.attempts, 30))), 3600) * Double.random(in: 0.8...1.2)
        return .milliseconds(Int64(wait * 1000))
    }

    private func post(_ delivery: ClaimedDelivery, using transport: WebhookTransport) async -> (
        ok: Bool, status: Int?, error: String?
    ) {
        let target: WebhookTargetPolicy.Target
        let secret: WebhookSecret
        do {
            target = try policy.target(delivery.url)
            secret = try WebhookSecret(parsing: delivery.secret)
        } catch {
            return (false, nil, "\(error)")
        }
        let body = Data(delivery.payload.utf8)
        let id = delivery.id.uuidString.lowercased()
        let timestamp = Int64(Date().timeIntervalSince1970)
        let headers = HTTPHeaders([
            ("Content-Type", "application/json"), ("User-Agent", "Tessera-Webhooks/1"), ("webhook-id", id),
            ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", secret.signature(id: id, timestamp: timestamp, body: body)),
        ])
        switch await transport.post(to: target, headers: headers, body: body) {
        case .answered(let status):
            return ((200..<300).contains(status), status, (200..<300).contains(status) ? nil : "HTTP \(status)")
        case .failed(let reason):
            return (false, nil, reason)
        }
    }
}

/// The HTTP side of a delivery (AsyncHTTPClient). Only the status matters (Standard Webhooks), so
/// a target cannot make a replica read or hold what it sends back: a body announced as at most
/// ``bodyLimit`` bytes is read and dropped (the connection stays open for the next delivery);
/// anything longer, or of unknown length, is not read and the connection is closed; the status
/// counts either way. Redirects are not followed: a target answers, it does not send us elsewhere
/// (perhaps to a private address the target check never saw); a 3xx is a failed attempt. One
/// deadline, ``WebhookSettings/requestTimeout``, covers the attempt, connection included.
///
/// A target whose host is a name is reached at the address the target check saw
/// (``WebhookTargetPolicy/Target/address``), not at whatever the name resolves to a moment later
/// (DNS rebinding): AsyncHTTPClient's `dnsOverride` connects there while TLS still checks the
/// certificate for the name. One client per (host, address), so connections are reused while the
/// name keeps its address; idle ones past ``pinnedClients`` are shut down.
/// Created by ``WebhookDeliveryService/run()``, shut down when it ends.
final class WebhookTransport: Sendable {
    enum Outcome: Sendable, Equatable {
        case answered(Int)
        case failed(String)
    }

    static let bodyLimit = 64 * 1024
    static let pinnedClients = 32

    private struct Pinned {
        var client: HTTPClient
        var inUse = 0
        var lastUsed = ContinuousClock.now
    }

    private let configuration: HTTPClient.Configuration
    private let direct: HTTPClient
    private let pinned = Mutex<[String: Pinned]>([:])
    private let timeout: TimeAmount

    init(timeout: Duration) {
        let amount = TimeAmount(timeout)
        configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: amount, read: amount), decompression: .disabled)
        direct = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.timeout = amount
    }

    func post(to target: WebhookTargetPolicy.Target, headers: HTTPHeaders, body: Data) async -> Outcome {
        let (client, key) = lease(target)
        defer { if let key { release(key) } }
        var request = HTTPClientRequest(url: target.url.absoluteString)
        request.method = .POST
        request.headers = headers
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: timeout)
            let length = response.headers.first(name: "content-length").flatMap(Int.init)
            if let length, length <= Self.bodyLimit {
                var read = 0
                for try await chunk in response.body {
                    read += chunk.readableBytes
                    if read > Self.bodyLimit { break }
                }
            }
            // Otherwise the body is left unread: dropping the response closes the connection.
            return .answered(Int(response.status.code))
        } catch {
            return .failed(Self.describe(error))
        }
    }

    /// The client for `target`: the shared one for an IP literal (or when private targets are
    /// allowed), else the one pinned to the checked address, made on first use.
    private func lease(_ target: WebhookTargetPolicy.Target) -> (HTTPClient, String?) {
        guard let address = target.address, let host = target.url.host else { return (direct, nil) }
        let key = "\(host) \(address)"
        var retired: [HTTPClient] = []
        let client = pinned.withLock { clients -> HTTPClient in
            if clients[key] == nil {
                var configuration = self.configuration
                configuration.dnsOverride = [host: address]
                clients[key] = Pinned(
                    client: HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration))
                let idle = clients.filter { $0.value.inUse == 0 && $0.key != key }.sorted {
                    $0.value.lastUsed < $1.value.lastUsed
                }
                for (old, entry) in idle.prefix(max(0, clients.count - Self.pinnedClients)) {
                    retired.append(entry.client)
                    clients[old] = nil
                }
            }
            clients[key]!.inUse += 1
            clients[key]!.lastUsed = .now
            return clients[key]!.client
        }
        for old in retired { Task { try? await old.shutdown() } }
        return (client, key)
    }

    private func release(_ key: String) {
        pinned.withLock { $0[key]?.inUse -= 1 }
    }

    /// A short text for the delivery log (no secrets: the request is ours, the URL the admin's).
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout:
            "no answer in time"
        case let error as HTTPClientError where error == .connectTimeout:
            "could not connect in time"
        case let error as HTTPClientError:
            "\(error)"
        default:
            String(describing: error).prefix(300).description
        }
    }

    func shutdown() async {
        try? await direct.shutdown()
        for client in pinned.withLock({ clients in
            defer { clients = [:] }; return clients.values.map(\.client)
        }) {
            try? await client.shutdown()
        }
    }
}
