import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import TesseraCore
import TesseraPostgres

/// Settings of `tessera serve`; see the README's configuration table.
public struct ServerConfiguration: Sendable {
    /// `TESSERA_HOST`, default 127.0.0.1.
    public var host: String
    /// `TESSERA_PORT`, default 8080.
    public var port: Int
    /// How often coalesced last-used times are written (at most one write per token per interval).
    public var lastUsedFlushInterval: Duration

    public init(host: String = "127.0.0.1", port: Int = 8080, lastUsedFlushInterval: Duration = .seconds(60)) {
        self.host = host
        self.port = port
        self.lastUsedFlushInterval = lastUsedFlushInterval
    }
}

/// Who authenticated, before the organization is resolved.
public enum Identity: Sendable {
    case token(VerifiedToken)
    case jwt(username: String)
}

/// The request context of every route.
public struct TesseraRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by the authentication middleware on API routes.
    public var identity: Identity?
    /// Peer address, for audit events.
    public var remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Bodies over 1 MiB get 413 (DESIGN §4.3).
    public var maxUploadSize: Int { 1 << 20 }
}

/// The one seam that builds the application, used by `tessera serve` and by the tests.
///
/// The `PostgresClient` runs as a service of the application, so start-up and graceful shutdown
/// (SIGTERM, SIGINT) are ordered for free.
public func buildApplication(
    configuration: ServerConfiguration,
    client: PostgresClient,
    migrator: Migrator,
    logger: Logger,
    jwt: JWTSettings = JWTSettings(),
    clock: any WallClock = SystemWallClock()
) async throws -> some ApplicationProtocol {
    let store = TesseraStore(client: client, logger: logger, clock: clock)
    let lastUsed = LastUsedRecorder(client: client, logger: logger, interval: configuration.lastUsedFlushInterval)
    let router = buildRouter(
        store: store, migrator: migrator, jwt: try await JWTAuthenticator.make(jwt), lastUsed: lastUsed)
    // Shut down in reverse order: the server stops, then last-used flushes, then the pool closes.
    return Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tessera"),
        services: [client, lastUsed],
        logger: logger
    )
}

func buildRouter(store: TesseraStore, migrator: Migrator, jwt: JWTAuthenticator?, lastUsed: LastUsedRecorder)
    -> Router<TesseraRequestContext>
{
    let router = Router(context: TesseraRequestContext.self)
    router.add(middleware: ProblemMiddleware())
    HealthController(store: store, migrator: migrator).addRoutes(to: router)
    for path in ["openapi.json", "api-tokens/openapi.json"] {
        router.get(RouterPath(path)) { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
    }

    let resolver = CallerResolver(store: store)
    let authentication = AuthenticationMiddleware(store: store, jwt: jwt, lastUsed: lastUsed)
    let tokens = TokenController(store: store, resolver: resolver)
    tokens.addRoutes(to: router.group("api-tokens").add(middleware: authentication))
    tokens.addRoutes(to: router.group("orgs/:org/api-tokens").add(middleware: authentication))
    let organizations = OrganizationController(store: store, resolver: resolver)
    let orgs = router.group("orgs").add(middleware: authentication)
    organizations.addRoutes(to: orgs)
    AuditController(store: store, organizations: organizations).addRoutes(to: orgs)
    UserController(store: store, resolver: resolver).addRoutes(to: router.group("users").add(middleware: authentication))
    return router
}
