import Foundation
import Logging
import PostgresNIO

/// An org's webhook endpoint (DESIGN §11). `secret` is read only to sign deliveries and to show
/// it once after creation or rotation; the API never lists it.
public struct WebhookRecord: Sendable {
    public var id: UUID
    public var orgID: UUID
    public var url: String
    public var description: String?
    public var events: [String]
    public var secret: String
    public var active: Bool
    public var createdAt: Date
    public var createdBy: String
    public var updatedAt: Date
}

/// One outbox row: an event for one endpoint, and how sending it went.
public struct WebhookDeliveryRecord: Sendable {
    public var id: UUID
    public var webhookID: UUID
    public var event: String
    public var payload: String
    public var createdAt: Date
    public var status: String
    public var attempts: Int
    public var nextAttemptAt: Date?
    public var lastAttemptAt: Date?
    public var lastStatus: Int?
    public var lastError: String?
    public var deliveredAt: Date?
}

/// A delivery claimed for sending, with what signing and sending it needs.
public struct ClaimedDelivery: Sendable {
    public var id: UUID
    public var webhookID: UUID
    public var event: String
    public var payload: String
    public var attempts: Int
    public var createdAt: Date
    /// Retries stop 26 h after this (creation, or the last redeliver).
    public var retryFrom: Date
    public var url: String
    public var secret: String
}

/// Webhooks and their outbox (`webhooks`, `webhook_deliveries`, migration 0009).
public struct WebhookRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    private func records(_ query: PostgresQuery) async throws -> [WebhookRecord] {
        var records: [WebhookRecord] = []
        let rows = try await connection.statement(query, logger: logger)
        for try await (id, org, url, description, events, secret, active, created, by, updated) in rows.decode(
            (UUID, UUID, String, String?, [String], String, Bool, Date, String, Date).self)
        {
            records.append(
                WebhookRecord(
                    id: id, orgID: org, url: url, description: description, events: events, secret: secret,
                    active: active,
                    createdAt: created, createdBy: by, updatedAt: updated))
        }
        return records
    }

    public func insert(
        orgID: UUID, url: String, description: String?, events: [String], secret: String, active: Bool,
        createdBy: String
    ) async throws -> WebhookRecord {
        let records = try await records(
            """
            INSERT INTO webhooks (org_id, url, description, events, secret, active, created_by)
            VALUES (\(orgID), \(url), \(description), \(events), \(secret), \(active), \(createdBy))
            RETURNING id, org_id, url, description, events, secret, active, created_at, created_by, updated_at
            """)
        guard let record = records.first else { throw StoreError.noRows }
        return record
    }

    public func list(orgID: UUID) async throws -> [WebhookRecord] {
        try await records(
            """
            SELECT id, org_id, url, description, events, secret, active, created_at, created_by, updated_at
            FROM webhooks WHERE org_id = \(orgID) ORDER BY created_at, id
            """)
    }

    public func find(id: UUID, orgID: UUID) async throws -> WebhookRecord? {
        try await records(
            """
            SELECT id, org_id, url, description, events, secret, active, created_at, created_by, updated_at
            FROM webhooks WHERE id = \(id) AND org_id = \(orgID)
            """
        ).first
    }

    /// Changes what is given (nil keeps the column); returns the updated record.
    public func update(
        id: UUID, orgID: UUID, url: String?, description: String??, events: [String]?, secret: String?, active: Bool?
    ) async throws -> WebhookRecord? {
        let setsDescription = description != nil
        return try await records(
            """
            UPDATE webhooks SET url = coalesce(\(url), url),
                description = CASE WHEN \(setsDescription) THEN \(description ?? nil) ELSE description END,
                events = coalesce(\(events)::text[], events), secret = coalesce(\(secret), secret),
                active = coalesce(\(active), active), updated_at = now()
            WHERE id = \(id) AND org_id = \(orgID)
            RETURNING id, org_id, url, description, events, secret, active, created_at, created_by, updated_at
            """
        ).first
    }

    public func delete(id: UUID, orgID: UUID) async throws -> Bool {
        for try await _ in try await connection.statement(
            "DELETE FROM webhooks WHERE id = \(id) AND org_id = \(orgID) RETURNING id", logger: logger)
        {
            return true
        }
        return false
    }

    /// The newest deliveries of a webhook first.
    public func deliveries(webhookID: UUID, limit: Int) async throws -> [WebhookDeliveryRecord] {
        let rows = try await connection.statement(
            """
            SELECT id, webhook_id, event, payload::text, created_at, status, attempts,
                   CASE WHEN status = 'pending' THEN next_attempt_at END, last_attempt_at, last_status, last_error, delivered_at
            FROM webhook_deliveries WHERE webhook_id = \(webhookID)
            ORDER BY created_at DESC, id LIMIT \(limit)
            """, logger: logger)
        var records: [WebhookDeliveryRecord] = []
        for try await (
            id, webhook, event, payload, created, status, attempts, next, last, lastStatus, lastError, delivered
        )
            in rows.decode((UUID, UUID, String, String, Date, String, Int32, Date?, Date?, Int32?, String?, Date?).self)
        {
            records.append(
                WebhookDeliveryRecord(
                    id: id, webhookID: webhook, event: event, payload: payload, createdAt: created, status: status,
                    attempts: Int(attempts), nextAttemptAt: next, lastAttemptAt: last,
                    lastStatus: lastStatus.map(Int.init),
                    lastError: lastError, deliveredAt: delivered))
        }
        return records
    }

    /// Sends a delivery again soon, whatever became of it (the same `webhook-id`, so a receiver
    /// that already has it can tell), with a fresh retry schedule: its attempts count from zero
    /// and retries run for 26 h from now. False when there is no such delivery of this webhook.
    public func redeliver(deliveryID: UUID, webhookID: UUID) async throws -> Bool {
        let rows = try await connection.statement(
            """
            UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), attempts = 0, retry_from = now(),
                -- a delivery being sent right now keeps its claim: it is not sent twice at once
                locked_until = CASE WHEN status = 'pending' THEN locked_until END
            WHERE id = \(deliveryID) AND webhook_id = \(webhookID) RETURNING id
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Claims up to `limit` due deliveries of active webhooks for `lease` (another replica takes
    /// them over if this one dies before it records the outcome). Oldest first.
    public func claim(limit: Int, lease: Duration) async throws -> [ClaimedDelivery] {
        let seconds = Double(lease.components.seconds)
        let rows = try await connection.statement(
            """
            WITH due AS (
                SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.active
                WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                  AND (d.locked_until IS NULL OR d.locked_until < now())
                ORDER BY d.next_attempt_at, d.created_at
                LIMIT \(limit)
                FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d SET locked_until = now() + make_interval(secs => \(seconds))
            FROM due, webhooks w
            WHERE d.id = due.id AND w.id = d.webhook_id
            RETURNING d.id, d.webhook_id, d.event, d.payload::text, d.attempts, d.created_at, d.retry_from, w.url, w.secret
            """, logger: logger)
        var claimed: [ClaimedDelivery] = []
        for try await (id, webhook, event, payload, attempts, created, retryFrom, url, secret) in rows.decode(
            (UUID, UUID, String, String, Int32, Date, Date, String, String).self)
        {
            claimed.append(
                ClaimedDelivery(
                    id: id, webhookID: webhook, event: event, payload: payload, attempts: Int(attempts),
                    createdAt: created,
                    retryFrom: retryFrom, url: url, secret: secret))
        }
        return claimed.sorted { $0.createdAt < $1.createdAt }
    }

    /// Gives claimed deliveries back unsent (due as before, any replica may take them).
    public func release(_ ids: [UUID]) async throws {
        try await connection.statement(
            "UPDATE webhook_deliveries SET locked_until = NULL WHERE id = ANY(\(ids)::uuid[])", logger: logger)
    }

    /// Records one attempt: delivered, or failed with the next attempt (nil: given up).
    public func recordAttempt(
        deliveryID: UUID, delivered: Bool, status: Int?, error: String?, retryIn: Duration?
    ) async throws {
        let retrySeconds = retryIn.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
        let outcome = delivered ? "delivered" : (retryIn == nil ? "failed" : "pending")
        try await connection.statement(
            """
            UPDATE webhook_deliveries SET
                status = \(outcome), attempts = attempts + 1, last_attempt_at = now(),
                last_status = \(status.map(Int32.init)), last_error = \(error.map { String($0.prefix(500)) }),
                delivered_at = CASE WHEN \(delivered) THEN now() END,
                next_attempt_at = CASE WHEN \(retrySeconds)::float8 IS NULL THEN next_attempt_at
                                       ELSE now() + make_interval(secs => \(retrySeconds)) END,
                locked_until = NULL
            WHERE id = \(deliveryID)
            """, logger: logger)
    }

    /// Queues the expiry notices due at `at`; returns how many events that made (0 when every
    /// due notice was already sent, by this replica or another). `batch` due tokens a statement,
    /// each its own transaction, each going on where the last stopped: a first sweep over a
    /// million due tokens neither holds one transaction open for minutes nor starves the traffic
    /// beside it.
    public func sweepExpiry(at: Date, batch: Int = 5_000) async throws -> Int {
        var queued = 0
        var after = (
            at: at.addingTimeInterval(-8 * 86_400), id: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        )
        while true {
            let rows = try await connection.statement(
                """
                SELECT queued, scanned, last_at, last_id
                FROM tessera_sweep_expiry(\(at), \(Int32(clamping: batch)), \(after.at), \(after.id))
                """, logger: logger)
            var scanned = 0
            for try await (count, seen, lastAt, lastID) in rows.decode((Int32, Int64, Date?, UUID?).self) {
                queued += Int(count)
                scanned = Int(seen)
                if let lastAt, let lastID { after = (lastAt, lastID) }
            }
            if scanned < batch { return queued }
        }
    }

    /// Pending deliveries and the age of the oldest, for `/metrics`.
    public func outboxDepth() async throws -> (pending: Int, oldestSeconds: Double) {
        let rows = try await connection.statement(
            """
            SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
            FROM webhook_deliveries WHERE status = 'pending'
            """, logger: logger)
        for try await (count, oldest) in rows.decode((Int64, Double).self) { return (Int(count), oldest) }
        return (0, 0)
    }
}
