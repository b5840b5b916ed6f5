import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices
import TesseraVerification
import TesseraWebhooks

/// Settings of `tessera serve`; see the README's configuration table.
public struct ServerConfiguration: Sendable {
    /// `TESSERA_HOST`, default 127.0.0.1.
    public var host: String
    /// `TESSERA_PORT`, default 8080.
    public var port: Int
    /// How often coalesced last-used times are written (at most one write per token per interval).
    public var lastUsedFlushInterval: Duration
    /// The verification cache of `/auth/verify` and `/oauth/introspect`.
    public var cache: VerificationCacheSettings
    /// How long a verification cache miss waits for the database before failing closed (nil: no limit).
    public var lookupTimeout: Duration?
    /// `TESSERA_VERIFY_LOOKUPS_IN_FLIGHT`: miss statements running at once before misses share one.
    public var lookupsInFlight: Int = TokenVerifier.defaultLookupsInFlight
    /// `TESSERA_DB_STATEMENTS`: named prepared statements, or unnamed ones (PgBouncer < 1.21 in
    /// transaction pooling).
    public var statements: StatementMode = .prepared
    /// `TESSERA_STANDBY_RECHECKS_PER_SECOND`: a standby's "unknown" asked again on the primary.
    public var standbyRechecksPerSecond: Double = 50
    /// `TESSERA_DB_LEASE_TIMEOUT_MS`: how long a management request waits for a pooled database
    /// connection before it answers 503 (``TesseraStore/withConnection(_:)``).
    public var leaseTimeout: Duration? = .seconds(5)
    /// Webhook targets, delivery and expiry notices.
    public var webhooks = WebhookSettings()
    /// `TESSERA_CREDENTIALS_REVOKE_PER_MINUTE`: reports a client address may send a minute.
    public var credentialsRevokePerMinute = 10
    /// `TESSERA_USAGE` (on|off): count verifications per token and hour (DESIGN §14).
    public var usageCounting = true
    /// `TESSERA_USAGE_RETENTION_DAYS`: usage rows older than this are deleted (default 365).
    public var usageRetentionDays = 365
    /// `TESSERA_TRUSTED_PROXIES`: proxies in front of Tessera's own API whose `X-Forwarded-For`
    /// names the client (for tokens limited to addresses); empty: the peer is the client.
    public var trustedProxies: [AddressRange] = []

    public init(
        host: String = "127.0.0.1", port: Int = 8080, lastUsedFlushInterval: Duration = .seconds(60),
        cache: VerificationCacheSettings = .init(), lookupTimeout: Duration? = .seconds(1)
    ) {
        self.lookupTimeout = lookupTimeout
        self.host = host
        self.port = port
        self.lastUsedFlushInterval = lastUsedFlushInterval
        self.cache = cache
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
    /// The peer, formatted only when asked for (audit events, last use): not on every request.
    private let peer: SocketAddress?
    public var remoteAddress: String? { peer?.ipAddress }

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.peer = source.channel.remoteAddress
    }

    /// Bodies over 1 MiB get 413 (DESIGN §4.3).
    public var maxUploadSize: Int { 1 << 20 }
}

/// The one seam that builds the application, used by `tessera serve` and by the tests.
///
/// The `PostgresClient` runs as a service of the application, so start-up and graceful shutdown
/// (SIGTERM, SIGINT) are ordered for free. `notifications` is the connection the invalidation
/// listener LISTENs on (nil: no push invalidation, the cache TTL alone bounds staleness).
/// `standby` answers verification misses (``StandbyReads``; only with a listener). `lookups`:
/// the connection verification misses have to themselves (``LookupConnection``; nil, or with
/// standby reads or more than one lookup in flight: misses go through the pool).
package func buildApplication(
    configuration: ServerConfiguration,
    client: PostgresClient,
    migrator: Migrator,
    logger: Logger,
    jwt: JWTSettings = JWTSettings(),
    clock: any WallClock = SystemWallClock(),
    notifications: PostgresConnection.Configuration? = nil,
    lookups: PostgresConnection.Configuration? = nil,
    standby: PostgresClient? = nil,
    surfaces: [any Surface] = []
) async throws -> some ApplicationProtocol {
    TesseraMetrics.bootstrap()
    let store = TesseraStore(
        client: client, logger: logger, clock: clock, statements: configuration.statements,
        leaseTimeout: configuration.leaseTimeout)
    let lastUsed = UsageRecorder(
        client: client, logger: logger, interval: configuration.lastUsedFlushInterval,
        counting: configuration.usageCounting, retentionDays: configuration.usageRetentionDays)
    // Standby reads are safe only with the listener's fences: without one, misses stay on the primary.
    let standbyReads =
        notifications == nil
        ? nil
        : standby.map {
            StandbyReads(
                standby: $0, logger: logger, statements: configuration.statements,
                recheckPerSecond: configuration.standbyRechecksPerSecond)
        }
    let lookupConnection =
        standbyReads != nil || configuration.lookupsInFlight > 1
        ? nil
        : lookups.map {
            LookupConnection(
                configuration: $0, statements: configuration.statements, timeout: configuration.lookupTimeout,
                logger: logger)
        }
    let verifier = TokenVerifier(
        store: store, cache: VerificationCache(settings: configuration.cache),
        lookupTimeout: configuration.lookupTimeout,
        lookupsInFlight: configuration.lookupsInFlight, standby: standbyReads, usage: lastUsed,
        lookups: lookupConnection)
    let listener = notifications.map { InvalidationListener(configuration: $0, verifier: verifier, logger: logger) }
    var services: [any Service] = [client]
    if let standby, standbyReads != nil { services.append(standby) }
    for surface in surfaces { services += surface.services }
    let router = buildRouter(
        store: store, migrator: migrator, jwt: try await JWTAuthenticator.make(jwt), lastUsed: lastUsed,
        verifier: verifier, listener: listener, surfaces: surfaces,
        webhookTargets: WebhookTargetPolicy(allowPrivate: configuration.webhooks.allowPrivateTargets),
        reportLimiter: RateLimiter(perMinute: configuration.credentialsRevokePerMinute),
        trustedProxies: configuration.trustedProxies)
    if configuration.webhooks.deliver {
        services.append(WebhookDeliveryService(store: store, settings: configuration.webhooks, logger: logger))
    }
    if let listener { services.append(listener) }
    if let lookupConnection { services.append(lookupConnection) }
    // Shut down in reverse order: the server stops, then last-used flushes, then the pool closes.
    services.append(lastUsed)
    return Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tessera"),
        services: services,
        logger: logger
    )
}

func buildRouter(
    store: TesseraStore, migrator: Migrator, jwt: JWTAuthenticator?, lastUsed: UsageRecorder,
    verifier: TokenVerifier, listener: InvalidationListener?, surfaces: [any Surface] = [],
    webhookTargets: WebhookTargetPolicy, reportLimiter: RateLimiter, trustedProxies: [AddressRange] = []
) -> Router<TesseraRequestContext> {
    let router = Router(context: TesseraRequestContext.self)
    let routes = RouteMethods()
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: ProblemMiddleware(routes: routes))
    router.add(middleware: URISanityMiddleware())
    HomeController(redirect: surfaces.lazy.compactMap(\.home).first).addRoutes(to: router)
    HealthController(store: store, migrator: migrator).addRoutes(to: router)
    MetricsController().addRoutes(to: router)
    for path in ["openapi.json", "api-tokens/openapi.json"] {
        router.get(RouterPath(path)) { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
        }
    }
    VerifyController(verifier: verifier, lastUsed: lastUsed).addRoutes(to: router)

    // Management routes authenticate without the cache (writes are strictly consistent), and a
    // write answers only once this replica's verification cache has seen it (read-your-writes).
    let resolver = CallerResolver(store: store)
    let authentication = AuthenticationMiddleware(
        store: store, jwt: jwt, lastUsed: lastUsed, trustedProxies: trustedProxies)
    let barrier = CacheBarrierMiddleware(listener: listener, verifier: verifier, client: store.client)
    let protect: (RouterGroup<TesseraRequestContext>) -> RouterGroup<TesseraRequestContext> = {
        $0.add(middleware: barrier).add(middleware: authentication)
    }
    let api: (RouterPath) -> RouterGroup<TesseraRequestContext> = { path in protect(router.group(path)) }
    let tokens = TokenController(store: store, resolver: resolver)
    let organizations = OrganizationController(
        organizations: OrganizationService(store: store), members: MemberService(store: store), resolver: resolver)
    let usage = UsageController(tokens: tokens, organizations: organizations)
    for group in [api("api-tokens"), api("orgs/:org/api-tokens")] {
        tokens.addRoutes(to: group)
        usage.addTokenRoutes(to: group)
    }
    let orgs = api("orgs")
    organizations.addRoutes(to: orgs)
    usage.addOrganizationRoutes(to: orgs)
    AuditController(store: store, organizations: organizations).addRoutes(to: orgs)
    WebhookController(webhooks: WebhookService(store: store, policy: webhookTargets), organizations: organizations)
        .addRoutes(to: orgs)
    // Unauthenticated, but a write like the others: the barrier makes this replica refuse a
    // reported token from the moment the report is answered.
    CredentialsRevokeController(reports: LeakReportService(store: store), limiter: reportLimiter).addRoutes(
        to: router.group("credentials").add(middleware: barrier))
    UserController(users: UserService(store: store), resolver: resolver).addRoutes(to: api("users"))
    let parts = SurfaceParts(store: store, resolver: resolver, api: api, protect: protect)
    for surface in surfaces { surface.addRoutes(to: router, parts: parts) }
    routes.load(from: router)
    return router
}

/// After a successful write, waits until this replica's verification cache has processed every
/// notification up to it (``InvalidationListener/barrier(using:)``), so a token revoked here is
/// refused here by the very next `/auth/verify`. Without a listener, drops the cache instead.
struct CacheBarrierMiddleware: RouterMiddleware {
    typealias Context = TesseraRequestContext
    let listener: InvalidationListener?
    let verifier: TokenVerifier
    let client: PostgresClient

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard request.method != .get, request.method != .head else { return try await next(request, context) }
        let journal = WriteJournal()
        let response = try await WriteJournal.$current.withValue(journal) { try await next(request, context) }
        guard response.status.code < 400 else { return response }
        // A write that touched no cached entry (a new token: no cache can hold a secret that did
        // not exist) needs no barrier: no round trip on the critical path of a create (#24).
        if journal.targets?.isEmpty == true { return response }
        if let listener {
            await listener.barrier(using: client, journal: journal)
        } else {
            verifier.invalidateAll()
        }
        return response
    }
}
