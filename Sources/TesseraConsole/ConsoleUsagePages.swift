import Foundation
import Hummingbird
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraServices

/// A page per token (its metadata, access rules, address limits, last addresses, and the last 30
/// days of verifications as a chart and a table) and the admins' Usage page (busiest tokens,
/// tokens unused for 30 days with Deactivate, tokens expiring within 7 days). DESIGN §14.
struct ConsoleUsagePages {
    let controller: ConsoleController
    var views: ConsoleViews { controller.views }
    var usage: UsageService { UsageService(store: controller.store) }

    func addRoutes(to pages: RouterGroup<ConsoleContext>) {
        pages.get("tokens/:id", use: token)
        pages.get("usage", use: overview)
    }

    static func day(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "MMM d"
        return formatter.string(from: date)
    }

    @Sendable func token(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let record = try await controller.token(context, user)
        let now = controller.store.clock.now()
        let (since, until) = try UsageService.period(since: nil, until: nil, granularity: .day, now: now)
        let (series, addresses) = try await usage.usage(
            of: record, since: since, until: until, granularity: .day, logger: context.logger)
        let totals = (0..<6).map { index in series.reduce(Int64(0)) { $0 + $1.counts[index] } }
        let chart = UsageChart(
            bars: series.map { .init(label: Self.day($0.start), counts: $0.counts) },
            title:
                "Verifications of \(record.name) per day over the last 30 days: "
                + zip(UsageChart.outcomeLabels, totals).map { "\($1) \($0.lowercased())" }.joined(separator: ", "))
        var data = controller.row(record, user)
        data.merge([
            "title": "Token \(record.name)", "heading": record.name, "source": record.source.rawValue,
            "federated": record.federation != nil,
            "subject": record.federation?.subject ?? "", "issuer": record.federation?.issuer ?? "",
            "rules": record.accessRules.map { rule -> [String: Any] in
                ["method": rule.method, "path": rule.path, "host": rule.host ?? "", "hasHost": rule.host != nil]
            },
            "hasRules": !record.accessRules.isEmpty,
            "cidrs": record.allowedCidrs.map(\.text).joined(separator: ", "), "hasCidrs": !record.allowedCidrs.isEmpty,
            "addresses": addresses.map { ["address": $0.address, "seen": ConsoleController.format($0.lastSeen)] },
            "hasAddresses": !addresses.isEmpty, "chart": chart.svg,
            "legend": zip(UsageChart.outcomes, UsageChart.outcomeLabels).map { ["outcome": $0, "label": $1] },
            "days": series.reversed().filter { $0.total > 0 }.map { point -> [String: Any] in
                var row: [String: Any] = ["day": Self.day(point.start)]
                for (name, count) in zip(UsageChart.outcomes, point.counts) { row[name] = count }
                return row
            },
            "totals": zip(UsageChart.outcomes, totals).reduce(into: [String: Any]()) { $0[$1.0] = $1.1 },
            "quiet": totals.allSatisfy { $0 == 0 },
            "back": isSameOriginPath(request.uri.queryParameters.get("back") ?? "")
                ? request.uri.queryParameters.get("back")! : "/console/org-tokens",
            "nav_org_tokens": record.kind == .organization, "nav_my_token": record.kind == .personal,
        ]) { _, new in new }
        return views.page("token", data, user: user)
    }

    @Sendable func overview(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try ConsoleAdminPages(controller: controller).admin(context)
        let now = controller.store.clock.now()
        let (since, until) = try UsageService.period(since: nil, until: nil, granularity: .day, now: now)
        let overview = try await usage.overview(
            org: user.org, since: since, until: until, limit: 25, logger: context.logger)
        let back = "/console/usage"
        return views.page(
            "usage",
            [
                "title": "Usage",
                "busiest": overview.busiest.map { total -> [String: Any] in
                    var row = controller.row(total.token, user)
                    row["total"] = total.total
                    row["valid"] = total.counts[0]
                    row["refused"] = total.total - total.counts[0]
                    return row
                },
                "noBusiest": overview.busiest.isEmpty,
                "unused": overview.unused.map { record -> [String: Any] in
                    var row = controller.row(record, user)
                    row["back"] = back
                    return row
                },
                "noUnused": overview.unused.isEmpty,
                "expiring": overview.expiring.map { controller.row($0, user) }, "noExpiring": overview.expiring.isEmpty,
                "back": back,
            ],
            user: user)
    }
}
