import Foundation
import Hummingbird
import Logging
import Synchronization
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices

/// `POST /credentials/revoke` (DESIGN §11, GitHub's shape): anyone who finds Tessera tokens
/// (a scanner, a stranger, `tessera scan --report`) reports them without credentials; every
/// well-formed token that is still live is revoked with reason `leaked`, recorded in its org's
/// audit trail and announced as `token.revoked` and `token.leaked` webhooks. The answer is the
/// same 202 whatever the list holds, so it tells nobody which strings were tokens. Rate-limited
/// per client address.
struct CredentialsRevokeController {
    let reports: LeakReportService
    let limiter: RateLimiter

    static let maxCredentials = 1000
    private static let requests = TesseraMetrics.counter("tessera_credentials_revoke_requests_total")
    private static let limited = TesseraMetrics.counter("tessera_credentials_revoke_rate_limited_total")

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post("revoke", use: revoke)
    }

    @Sendable func revoke(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<Message> {
        Self.requests.increment()
        if let retryAfter = limiter.take(context.remoteAddress ?? "unknown") {
            Self.limited.increment()
            throw Problem(
                .tooManyRequests, "Too many reports from this address; retry in \(retryAfter) s",
                headers: [.retryAfter: String(retryAfter)])
        }
        let body = try await request.decodeJSON(CredentialsReport.self, context: context)
        guard body.credentials.count <= Self.maxCredentials else {
            throw Problem.invalidField("credentials", "must hold at most \(Self.maxCredentials) strings")
        }
        try await reports.revoke(body.credentials, sourceIP: context.remoteAddress, logger: context.logger)
        return EditedResponse(status: .accepted, response: Message(message: "Reported credentials are being handled"))
    }
}

/// A token bucket per client address: `perMinute` requests a minute, all of them at once at
/// most. Bounded memory: past 10,000 addresses the oldest buckets are forgotten.
final class RateLimiter: Sendable {
    private let perMinute: Double
    private let buckets = Mutex<[String: (tokens: Double, at: ContinuousClock.Instant)]>([:])

    init(perMinute: Int) { self.perMinute = Double(perMinute) }

    /// Nil when allowed, else the seconds to wait.
    func take(_ key: String) -> Int? {
        let now = ContinuousClock.now
        return buckets.withLock { buckets in
            if buckets.count > 10_000 {
                let oldest = buckets.sorted { $0.value.at < $1.value.at }.prefix(buckets.count / 2).map(\.key)
                for key in oldest { buckets[key] = nil }
            }
            var bucket = buckets[key] ?? (perMinute, now)
            let elapsed = bucket.at.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(perMinute, bucket.tokens + seconds * perMinute / 60)
            bucket.at = now
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return max(1, Int(((1 - bucket.tokens) * 60 / perMinute).rounded(.up)))
            }
            bucket.tokens -= 1
            buckets[key] = bucket
            return nil
        }
    }
}
