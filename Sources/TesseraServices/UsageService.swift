import Foundation
import Logging
import TesseraCore
import TesseraPostgres

/// What a token did, and an org's busiest, idle and expiring tokens (DESIGN §14): reads of what
/// ``UsageRecorder`` flushed (so up to a flush interval behind), for the API and the console.
public struct UsageService: Sendable {
    let store: TesseraStore

    public init(store: TesseraStore) { self.store = store }

    public enum Granularity: String, Sendable {
        case hour, day
        var seconds: TimeInterval { self == .hour ? 3600 : 86_400 }
        /// The longest period one answer covers.
        var maxBuckets: Int { self == .hour ? 24 * 31 : 366 }
    }

    /// A period checked and aligned to whole buckets: `until` (default now) rounded up, `since`
    /// (default 30 days, or 48 hours, before) rounded down; at most 744 hours or 366 days.
    public static func period(since: Date?, until: Date?, granularity: Granularity, now: Date) throws(DomainError)
        -> (since: Date, until: Date)
    {
        let step = granularity.seconds
        let end = ((until ?? now).timeIntervalSince1970 / step).rounded(.up) * step
        let defaultSpan = granularity == .hour ? 48 * 3600 : 30 * 86_400
        let start = ((since?.timeIntervalSince1970 ?? end - Double(defaultSpan)) / step).rounded(.down) * step
        guard start < end else { throw .invalidField("since", "must be before until") }
        guard (end - start) / step <= Double(granularity.maxBuckets) else {
            throw .invalidField(
                "since", "a period of at most \(granularity.maxBuckets) \(granularity.rawValue)s at this granularity")
        }
        return (Date(timeIntervalSince1970: start), Date(timeIntervalSince1970: end))
    }

    /// Every bucket of the period, zeros included, and the last addresses.
    public func usage(of token: TokenRecord, since: Date, until: Date, granularity: Granularity, logger: Logger)
        async throws -> (series: [UsagePointRecord], addresses: [(address: String, lastSeen: Date)])
    {
        let (points, addresses) = try await store.withConnection { connection in
            let usage = UsageRepository(connection, logger: logger)
            return (
                try await usage.series(tokenID: token.id, since: since, until: until, daily: granularity == .day),
                try await usage.lastAddresses(tokenID: token.id)
            )
        }
        var byStart: [Date: UsagePointRecord] = [:]
        for point in points { byStart[point.start] = point }
        var series: [UsagePointRecord] = []
        var start = since
        while start < until {
            series.append(byStart[start] ?? UsagePointRecord(start: start, counts: Array(repeating: 0, count: 6)))
            start = start.addingTimeInterval(granularity.seconds)
        }
        return (series, addresses)
    }

    public struct Overview: Sendable {
        public var busiest: [TokenUsageTotal]
        public var unused: [TokenRecord]
        public var expiring: [TokenRecord]
    }

    /// The org's busiest tokens in the period, its live tokens unused for 30 days, and those
    /// expiring within 7 days.
    public func overview(
        org: OrganizationRecord, since: Date, until: Date, order: UsageOrder = .busiest, limit: Int, logger: Logger
    ) async throws -> Overview {
        let now = store.clock.now()
        return try await store.withConnection { connection in
            let usage = UsageRepository(connection, logger: logger)
            return Overview(
                busiest: try await usage.totals(orgID: org.id, since: since, until: until, order: order, limit: limit),
                unused: try await usage.unused(
                    orgID: org.id, before: now.addingTimeInterval(-30 * 86_400), limit: limit),
                expiring: try await usage.expiring(
                    orgID: org.id, before: now.addingTimeInterval(7 * 86_400), limit: limit))
        }
    }
}
