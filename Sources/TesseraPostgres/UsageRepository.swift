import Foundation
import Logging
import PostgresNIO
import TesseraCore

/// Verifications of one bucket (an hour or a day) by outcome.
public struct UsagePointRecord: Sendable, Equatable {
    public var start: Date
    /// valid, insufficient_scope, expired, inactive, revoked, address.
    public var counts: [Int64]

    public init(start: Date, counts: [Int64]) {
        self.start = start
        self.counts = counts
    }

    public var total: Int64 { counts.reduce(0, +) }
}

/// A token's totals over a period, for the org's usage page.
public struct TokenUsageTotal: Sendable {
    public var token: TokenRecord
    public var counts: [Int64]
    public var total: Int64 { counts.reduce(0, +) }
}

/// How an org's token totals are ordered.
public enum UsageOrder: String, Sendable, CaseIterable {
    case busiest = "-total", quietest = "total", name, mostRefused = "-refused"

    var sql: String {
        switch self {
        case .busiest: "u.v + u.s + u.e + u.i + u.r + u.a DESC, t.name"
        case .quietest: "u.v + u.s + u.e + u.i + u.r + u.a, t.name"
        case .name: "t.name, t.id"
        case .mostRefused: "u.s + u.e + u.i + u.r + u.a DESC, t.name"
        }
    }
}

/// Usage as recorded by `UsageRecorder` (`token_usage`, `token_addresses`, migration 0012).
public struct UsageRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// The non-empty buckets of `tokenID` in [since, until): hourly rows as they are (`day`
    /// false), or hourly and daily rows summed per UTC day.
    public func series(tokenID: UUID, since: Date, until: Date, daily: Bool) async throws -> [UsagePointRecord] {
        let rows = try await connection.statement(
            """
            SELECT CASE WHEN \(daily) THEN date_trunc('day', bucket, 'UTC') ELSE bucket END AS start,
                   sum(valid)::bigint, sum(insufficient_scope)::bigint, sum(expired)::bigint, sum(inactive)::bigint,
                   sum(revoked)::bigint, sum(address)::bigint
            FROM token_usage
            WHERE token_id = \(tokenID) AND bucket >= \(since) AND bucket < \(until)
              AND (\(daily) OR granularity = 'hour')
            GROUP BY 1 ORDER BY 1
            """, logger: logger)
        var points: [UsagePointRecord] = []
        for try await (start, v, s, e, i, r, a) in rows.decode((Date, Int64, Int64, Int64, Int64, Int64, Int64).self) {
            points.append(UsagePointRecord(start: start, counts: [v, s, e, i, r, a]))
        }
        return points
    }

    /// The token's last distinct client addresses, newest first.
    public func lastAddresses(tokenID: UUID) async throws -> [(address: String, lastSeen: Date)] {
        let rows = try await connection.statement(
            """
            SELECT host(address), last_seen FROM token_addresses WHERE token_id = \(tokenID)
            ORDER BY last_seen DESC LIMIT 5
            """, logger: logger)
        var seen: [(String, Date)] = []
        for try await row in rows.decode((String, Date).self) { seen.append(row) }
        return seen
    }

    /// Every token of the org with verifications in [since, until), by total, busiest first.
    public func totals(orgID: UUID, since: Date, until: Date, order: UsageOrder = .busiest, limit: Int) async throws
        -> [TokenUsageTotal]
    {
        let rows = try await connection.statement(
            """
            SELECT \(unescaped: TokenRepository.tokenColumns), u.v, u.s, u.e, u.i, u.r, u.a
            FROM (SELECT token_id, sum(valid)::bigint AS v, sum(insufficient_scope)::bigint AS s,
                         sum(expired)::bigint AS e, sum(inactive)::bigint AS i, sum(revoked)::bigint AS r,
                         sum(address)::bigint AS a
                  FROM token_usage WHERE org_id = \(orgID) AND bucket >= \(since) AND bucket < \(until)
                  GROUP BY token_id) u
            JOIN tokens t ON t.id = u.token_id JOIN organizations o ON o.id = t.org_id
            ORDER BY \(unescaped: order.sql)
            LIMIT \(limit)
            """, logger: logger)
        var totals: [TokenUsageTotal] = []
        for try await row in rows {
            let cells = row.makeRandomAccess()
            let counts = try (25...30).map { try cells[$0].decode(Int64.self) }
            totals.append(TokenUsageTotal(token: try TokenRepository.tokenRecord(row), counts: counts))
        }
        return totals
    }

    /// Live tokens of the org not used since `before` (never used ones made before it included),
    /// least recently used first.
    public func unused(orgID: UUID, before: Date, limit: Int) async throws -> [TokenRecord] {
        try await tokens(
            """
            SELECT \(unescaped: TokenRepository.tokenColumns)
            FROM tokens t JOIN organizations o ON o.id = t.org_id
            WHERE t.org_id = \(orgID) AND t.status = 'active' AND t.source = 'direct'
              AND (t.expires_at IS NULL OR t.expires_at > now())
              AND coalesce(t.last_used_at, t.created_at) < \(before)
            ORDER BY coalesce(t.last_used_at, t.created_at) LIMIT \(limit)
            """)
    }

    /// Live tokens of the org expiring before `before`, soonest first.
    public func expiring(orgID: UUID, before: Date, limit: Int) async throws -> [TokenRecord] {
        try await tokens(
            """
            SELECT \(unescaped: TokenRepository.tokenColumns)
            FROM tokens t JOIN organizations o ON o.id = t.org_id
            WHERE t.org_id = \(orgID) AND t.status = 'active' AND t.source = 'direct'
              AND t.expires_at > now() AND t.expires_at < \(before)
            ORDER BY t.expires_at LIMIT \(limit)
            """)
    }

    private func tokens(_ query: PostgresQuery) async throws -> [TokenRecord] {
        var records: [TokenRecord] = []
        for try await row in try await connection.statement(query, logger: logger) {
            records.append(try TokenRepository.tokenRecord(row))
        }
        return records
    }
}
