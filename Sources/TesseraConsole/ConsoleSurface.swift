import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import TesseraFederation
import TesseraHTTP
import TesseraPostgres
import TesseraWebhooks

/// The web console as a surface of the application (DESIGN §8): its templates and static files
/// read once, its PostgreSQL session store (a service: it sweeps expired sessions), and its pages
/// under `/console/`, where browsers opening `/` are sent.
public struct ConsoleSurface: Surface {
    let settings: ConsoleSettings
    let views: ConsoleViews
    let driver: PostgresSessionDriver
    let webhookTargets: WebhookTargetPolicy
    let federation: FederationSettings

    /// `server` is the application's configuration: off loopback (`host`), cookies travel over
    /// TLS only (behind a TLS-terminating proxy) unless ``ConsoleSettings/secureCookies`` says
    /// otherwise; the session store leases connections as the API does (`leaseTimeout`).
    public init(
        settings: ConsoleSettings, server: ServerConfiguration, client: PostgresClient, logger: Logger,
        federation: FederationSettings = FederationSettings()
    ) async throws {
        var settings = settings
        settings.secureCookies = settings.secureCookies ?? !["127.0.0.1", "localhost", "::1"].contains(server.host)
        self.settings = settings
        self.views = try await ConsoleViews.load(directory: settings.directory)
        self.driver = PostgresSessionDriver(
            store: TesseraStore(
                client: client, logger: logger, statements: server.statements, leaseTimeout: server.leaseTimeout))
        self.webhookTargets = WebhookTargetPolicy(allowPrivate: server.webhooks.allowPrivateTargets)
        self.federation = federation
    }

    package var services: [any Service] { [driver] }
    package var home: String? { "/console/" }

    package func addRoutes(to router: Router<TesseraRequestContext>, parts: SurfaceParts) {
        ConsoleController(
            store: parts.store, views: views, settings: settings, sessionDriver: driver, webhookTargets: webhookTargets,
            federation: federation
        ).addRoutes(to: router)
    }
}
