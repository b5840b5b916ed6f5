import Foundation
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import TesseraHTTP
import TesseraPostgres

/// Workload identity federation as a surface of the application (DESIGN §13): the RFC 8693
/// exchange at `/oauth/token` (unauthenticated; its errors in RFC 6749's shape), org admins'
/// `/orgs/{org}/trust-policies`, and a background purge of expired exchanged tokens and spent JWT
/// ids.
public struct FederationSurface: Surface {
    let settings: FederationSettings
    let keys: IssuerKeys
    let maintenance: FederationMaintenance

    public init(settings: FederationSettings, server: ServerConfiguration, client: PostgresClient, logger: Logger) {
        self.settings = settings
        self.keys = IssuerKeys(settings: settings, logger: logger)
        self.maintenance = FederationMaintenance(
            store: TesseraStore(
                client: client, logger: logger, statements: server.statements, leaseTimeout: server.leaseTimeout),
            settings: settings)
    }

    package var services: [any Service] { [maintenance] }

    package func addRoutes(to router: Router<TesseraRequestContext>, parts: SurfaceParts) {
        TokenEndpoint(exchange: TokenExchangeService(store: parts.store, keys: keys))
            .addRoutes(to: router.group("oauth").add(middleware: OAuthErrorMiddleware()))
        TrustPolicyController(
            policies: TrustPolicyService(store: parts.store, settings: settings), resolver: parts.resolver
        ).addRoutes(to: parts.api("orgs"))
    }
}

/// Deletes exchanged tokens some days after they expired (`TESSERA_FEDERATION_RETENTION_DAYS`)
/// and the JWT ids whose JWTs expired, in batches, every few minutes. Every replica may run it.
struct FederationMaintenance: Service {
    let store: TesseraStore
    let settings: FederationSettings

    func run() async throws {
        // First after one interval: a replica starting (or a test app) needs no purge at once.
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: settings.purgeInterval) }
            } catch {
                return
            }
            await purge()
        }
    }

    /// One round; returns (tokens, JWT ids) deleted.
    @discardableResult
    func purge() async -> (tokens: Int, jtis: Int) {
        let now = store.clock.now()
        let retention = TimeInterval(settings.retentionDays) * 86_400
        var (tokens, jtis) = (0, 0)
        do {
            // Batches of 1000 keep each statement's locks short.
            while true {
                let deleted = try await store.withConnection {
                    try await TrustPolicyRepository($0, logger: store.logger).purgeExchanged(
                        expiredBefore: now.addingTimeInterval(-retention), limit: 1000)
                }
                tokens += deleted
                if deleted < 1000 || Task.isCancelled { break }
            }
            jtis = try await store.withConnection {
                try await TrustPolicyRepository($0, logger: store.logger).purgeJTIs(
                    expiredBefore: now.addingTimeInterval(-60))
            }
        } catch {
            store.logger.debug("federation purge failed", metadata: ["error": "\(describeDatabaseFailure(error))"])
        }
        if tokens + jtis > 0 {
            store.logger.info("federation: purged", metadata: ["tokens": "\(tokens)", "jtis": "\(jtis)"])
        }
        return (tokens, jtis)
    }
}
