import Foundation
import Hummingbird
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices

extension TokenUsage: ResponseEncodable {}
extension OrganizationUsage: ResponseEncodable {}

/// What tokens did (DESIGN §14): `GET /api-tokens/{tokenUUID}/usage` for whoever may see the
/// token, `GET /orgs/{org}/usage` for admins.
struct UsageController {
    let tokens: TokenController
    let organizations: OrganizationController
    var usage: UsageService { UsageService(store: tokens.store) }

    func addTokenRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.get(":tokenUUID/usage", use: tokenUsage)
    }

    func addOrganizationRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.get(":org/usage", use: organizationUsage)
    }

    /// `since`, `until` (epoch seconds) and `granularity` (`hour` or `day`, the default).
    @Sendable func tokenUsage(_ request: Request, context: TesseraRequestContext) async throws -> TokenUsage {
        let (caller, _) = try await tokens.authorize(request, context, scope: "tokens:read")
        let record = try await tokens.visibleToken(request, context, caller)
        let parameters = request.uri.queryParameters
        try parameters.requireSingle("since", "until", "granularity")
        let granularity: UsageService.Granularity
        switch parameters.get("granularity") {
        case nil, "day": granularity = .day
        case "hour": granularity = .hour
        default: throw Problem(.badRequest, "granularity must be hour or day")
        }
        let (since, until) = try UsageService.period(
            since: try Self.date(parameters, "since"), until: try Self.date(parameters, "until"),
            granularity: granularity, now: tokens.store.clock.now())
        let (series, addresses) = try await usage.usage(
            of: record, since: since, until: until, granularity: granularity, logger: context.logger)
        return TokenUsage(
            tokenUUID: record.id.uuidString.lowercased(), granularity: granularity.rawValue, since: epoch(since),
            until: epoch(until), series: series.map(UsagePoint.init),
            lastAddresses: addresses.map {
                AddressSeen(address: $0.address, lastSeen: epoch($0.lastSeen))
            })
    }

    /// `since`, `until` (default: the last 30 days), `sort` (`-total`, the default, `total`, `name`
    /// or `-refused`) and `limit` (1-1000, default 100).
    @Sendable func organizationUsage(_ request: Request, context: TesseraRequestContext) async throws
        -> OrganizationUsage
    {
        let (_, org) = try await organizations.resolve(request, context, scope: "org:read", admin: true)
        let parameters = request.uri.queryParameters
        try parameters.requireSingle("since", "until", "limit", "sort")
        guard let order = UsageOrder(rawValue: parameters.get("sort") ?? "-total") else {
            throw Problem(
                .badRequest, "sort must be one of \(UsageOrder.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var limit = 100
        if let raw = parameters.get("limit") {
            guard let value = Int(raw), (1...1000).contains(value) else {
                throw Problem(.badRequest, "limit must be an integer from 1 to 1000")
            }
            limit = value
        }
        let now = tokens.store.clock.now()
        let (since, until) = try UsageService.period(
            since: try Self.date(parameters, "since"), until: try Self.date(parameters, "until"), granularity: .day,
            now: now)
        let overview = try await usage.overview(
            org: org, since: since, until: until, order: order, limit: limit, logger: context.logger)
        return OrganizationUsage(
            since: epoch(since), until: epoch(until),
            tokens: overview.busiest.map { total in
                TokenUsageInfo(
                    token: TokenInfo(record: total.token, now: now), total: total.total, valid: total.counts[0],
                    insufficientScope: total.counts[1], expired: total.counts[2], inactive: total.counts[3],
                    revoked: total.counts[4], address: total.counts[5])
            }, unused: overview.unused.map { TokenInfo(record: $0, now: now) },
            expiring: overview.expiring.map { TokenInfo(record: $0, now: now) })
    }

    static func date(_ parameters: Parameters, _ name: String) throws -> Date? {
        guard let raw = parameters.get(name) else { return nil }
        guard let seconds = Int64(raw), seconds >= 0, seconds < 32_503_680_000 else {
            throw Problem(.badRequest, "\(name) must be epoch seconds")
        }
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }
}

extension UsagePoint {
    init(_ record: UsagePointRecord) {
        let c = record.counts
        self.init(
            start: epoch(record.start), valid: c[0], insufficientScope: c[1], expired: c[2], inactive: c[3],
            revoked: c[4], address: c[5])
    }
}
