import Foundation
import Logging
import PostgresNIO

/// One stored audit event, as read back.
public struct AuditRecord: Sendable {
    public var id: Int64
    public var occurredAt: Date
    public var actorUsername: String?
    public var actorKind: String
    public var actorTokenID: UUID?
    public var action: String
    public var targetTokenID: UUID?
    public var targetUsername: String?
    public var sourceIP: String?
    public var details: String
}

/// Filters of the audit API; pages go newest first, keyed on the event id.
public struct AuditQuery: Sendable {
    public var limit = 100
    public var beforeID: Int64?
    public var actor: String?
    public var action: String?
    public var tokenID: UUID?
    public var since: Date?
    public var until: Date?
    public init() {}
}

/// The audit trail (`audit_events`): written in the transaction of the change it records.
public struct AuditRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// A page of `orgID`'s events; the index `audit_events_org_idx` keeps it cheap.
    public func events(orgID: UUID, query page: AuditQuery) async throws -> (
        events: [AuditRecord], more: Bool
    ) {
        let rows = try await connection.statement(
            """
            SELECT id, occurred_at, actor_username, actor_kind, actor_token_id, action, target_token_id,
                   target_username, host(source_ip), details::text
            FROM audit_events
            WHERE org_id = \(orgID)
              AND (\(page.beforeID)::bigint IS NULL OR id < \(page.beforeID))
              AND (\(page.actor)::text IS NULL OR actor_username = \(page.actor))
              AND (\(page.action)::text IS NULL OR action = \(page.action))
              AND (\(page.tokenID)::uuid IS NULL OR target_token_id = \(page.tokenID) OR actor_token_id = \(page.tokenID))
              AND (\(page.since)::timestamptz IS NULL OR occurred_at >= \(page.since))
              AND (\(page.until)::timestamptz IS NULL OR occurred_at < \(page.until))
            ORDER BY id DESC
            LIMIT \(page.limit + 1)
            """,
            logger: logger)
        var events: [AuditRecord] = []
        for try await row in rows {
            let c = row.makeRandomAccess()
            events.append(
                AuditRecord(
                    id: try c[0].decode(Int64.self), occurredAt: try c[1].decode(Date.self),
                    actorUsername: try c[2].decode(String?.self), actorKind: try c[3].decode(String.self),
                    actorTokenID: try c[4].decode(UUID?.self), action: try c[5].decode(String.self),
                    targetTokenID: try c[6].decode(UUID?.self), targetUsername: try c[7].decode(String?.self),
                    sourceIP: try c[8].decode(String?.self), details: try c[9].decode(String.self)))
        }
        let more = events.count > page.limit
        return (Array(events.prefix(page.limit)), more)
    }

    public func record(_ event: AuditEvent) async throws {
        try await connection.statement(
            "INSERT INTO audit_events (\(unescaped: Self.columns)) VALUES (\(audit: event))", logger: logger)
    }

    /// One event per token of `tokens`, alike but for the token (a cascade's revocations), in one
    /// statement: deprovisioning a member with 1,000 tokens is one INSERT, not 1,000 round trips.
    public func record(_ event: AuditEvent, forEachOf tokens: [UUID]) async throws {
        guard !tokens.isEmpty else { return }
        try await connection.statement(
            """
            INSERT INTO audit_events (\(unescaped: Self.columns))
            SELECT \(audit: event, targetToken: "token") FROM unnest(\(tokens)::uuid[]) AS token
            """,
            logger: logger)
    }

    /// The columns ``PostgresQuery/StringInterpolation/appendInterpolation(audit:targetToken:)`` fills.
    static let columns = """
        org_id, actor_username, actor_kind, actor_token_id, action, target_token_id, target_username, source_ip, details
        """
}

extension PostgresQuery.StringInterpolation {
    /// An audit event's values, bound, in the order of ``AuditRepository/columns``: one list for
    /// every statement that writes events. `targetToken` names a column of the statement (a CTE's
    /// new token, an unnested id) instead of the event's own target.
    mutating func appendInterpolation(audit event: AuditEvent, targetToken: String? = nil) {
        // A [String: String] always encodes.
        let details = (try? JSONEncoder().encode(event.details)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        appendInterpolation(event.orgID)
        appendLiteral(", ")
        appendInterpolation(event.actorUsername)
        appendLiteral(", ")
        appendInterpolation(event.actorKind.rawValue)
        appendLiteral(", ")
        appendInterpolation(event.actorTokenID)
        appendLiteral(", ")
        appendInterpolation(event.action.rawValue)
        appendLiteral(", ")
        if let targetToken { appendLiteral(targetToken) } else { appendInterpolation(event.targetTokenID) }
        appendLiteral(", ")
        appendInterpolation(event.targetUsername)
        appendLiteral(", ")
        // Bound as text even when absent: a prepared statement's first NULL must not make it inet.
        appendLiteral("NULLIF(")
        appendInterpolation(event.sourceIP ?? "")
        appendLiteral(", '')::inet, ")
        appendInterpolation(details)
        appendLiteral("::jsonb")
    }
}
