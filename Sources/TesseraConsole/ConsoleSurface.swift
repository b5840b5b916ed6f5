import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import TesseraHTTP
import TesseraWebhooks

/// The web console as a surface of the application (DESIGN §8): its templates and static files
/// read once, its PostgreSQL session store (a service: it sweeps expired sessions), and its pages
/// under `/console/`, where browsers opening `/` are sent.
public struct ConsoleSurface: Surface {
    let settings: ConsoleSettings
    let views: ConsoleViews
    let driver: PostgresSessionDriver
    let webhookTargets: WebhookTargetPolicy

    /// `host` is the address the server listens on: off loopback, cookies travel over TLS only
    /// (behind a TLS-terminating proxy) unless ``ConsoleSettings/secureCookies`` says otherwise.
    public init(
        settings: ConsoleSettings, host: String, client: PostgresClient, logger: Logger,
        webhookTargets: WebhookTargetPolicy
    ) async throws {
        var settings = settings
        settings.secureCookies = settings.secureCookies ?? !["127.0.0.1", "localhost", "::1"].contains(host)
        self.settings = settings
        self.views = try await ConsoleViews.load(directory: settings.directory)
        self.driver = PostgresSessionDriver(client: client, logger: logger)
        self.webhookTargets = webhookTargets
    }

    package var services: [any Service] { [driver] }
    package var home: String? { "/console/" }

    package func addRoutes(to router: Router<TesseraRequestContext>, parts: SurfaceParts) {
        ConsoleController(
            store: parts.store, views: views, settings: settings, sessionDriver: driver, webhookTargets: webhookTargets
        ).addRoutes(to: router)
    }
}
