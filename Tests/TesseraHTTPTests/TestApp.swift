import Foundation
import Hummingbird
import HummingbirdTesting
import JWTKit
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import TesseraBentoCloud
import TesseraCore
import TesseraFederation
import TesseraHTTP
import TesseraIdentity
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import TesseraWebhooks
import Testing

@testable import TesseraConsole

/// Every log line the application wrote, to prove no secret ever reaches a log.
final class LogCapture: @unchecked Sendable {
    private let lock = NIOLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
            capture.append("\(event.level) \(event.message) \(merged)")
        }
    }
}

/// A bootstrapped org `acme` (admin `root`), members added through the store, and helpers to
/// call the application through HummingbirdTesting against the real PostgreSQL.
struct TestApp {
    static let jwtSecret = "test-secret-for-hs256-signing-only"

    let store: TesseraStore
    let root: BootstrapResult
    let logs: LogCapture

    static func run(
        jwt settings: JWTSettings = JWTSettings(secret: jwtSecret),
        clock: any WallClock = SystemWallClock(),
        configuration: ServerConfiguration = .init(lookupTimeout: .seconds(10)),
        console: ConsoleSettings? = ConsoleSettings(),
        listen: Bool = true,
        afterShutdown: (@Sendable (TestApp) async throws -> Void)? = nil,
        _ body: @escaping @Sendable (TestApp, any TestClientProtocol) async throws -> Void
    ) async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        let logs = LogCapture()
        let logger = Logger(label: "tessera.test") { _ in LogCapture.Handler(capture: logs) }
        try await withRunningClient(url, logger: logger) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let root = try await store.bootstrap(organization: "acme", admin: "root")
            var clientConfiguration = try url.clientConfiguration()
            clientConfiguration.options.maximumConnections = 8  // many apps run at once
            let appClient = PostgresClient(configuration: clientConfiguration, backgroundLogger: logger)
            // Dozens of apps share 2 cores while the suite runs: a connection can take longer
            // than production's 5 s to lease here (BoundedLeaseTests covers the bound itself).
            var configuration = configuration
            configuration.leaseTimeout = configuration.leaseTimeout.map { max($0, .seconds(30)) }
            var federation = FederationSettings()
            federation.allowHTTPIssuers = true
            var surfaces: [any Surface] = [
                BentoCloudSurface(), SCIMSurface(),
                FederationSurface(settings: federation, server: configuration, client: appClient, logger: logger),
            ]
            if let console {
                surfaces.append(
                    try await ConsoleSurface(
                        settings: console, server: configuration, client: appClient, logger: logger,
                        federation: federation))
            }
            let app = try await buildApplication(
                configuration: configuration, client: appClient, migrator: try Migrator(), logger: logger,
                jwt: settings, clock: clock, notifications: listen ? try url.connectionConfiguration() : nil,
                lookups: try url.connectionConfiguration(), surfaces: surfaces)
            let testApp = TestApp(store: store, root: root, logs: logs)
            try await app.test(.router) { client in try await body(testApp, client) }
            try await afterShutdown?(testApp)
            for line in logs.all {
                #expect(!line.containsTokenSecret, "a log line holds a token secret")
            }
        }
    }

    /// Adds `username` to `org` with `role` and `groups` (creating the user).
    func addMember(_ username: String, org: String = "acme", role: MembershipRole = .member, groups: [String] = [])
        async throws
    {
        try await store.transaction { connection in
            guard let organization = try await OrganizationRepository(connection, logger: store.logger).find(slug: org)
            else {
                throw StoreError.noRows
            }
            let userID = try await UserRepository(connection, logger: store.logger).upsert(
                username: username, platformAdmin: false)
            try await MembershipRepository(connection, logger: store.logger).put(
                orgID: organization.id, userID: userID, role: role, groups: groups)
        }
    }

    /// A HS256 JWT for `username`, valid for an hour.
    static func jwt(_ username: String, claim: String = "preferred_username", groups: [String]? = nil) async throws
        -> String
    {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: jwtSecret), digestAlgorithm: .sha256)
        struct Payload: JWTPayload {
            var exp: ExpirationClaim
            var sub: SubjectClaim
            var preferred_username: String
            var groups: [String]?
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        return try await keys.sign(
            Payload(
                exp: .init(value: Date().addingTimeInterval(3600)), sub: .init(value: username),
                preferred_username: username, groups: groups))
    }
}

extension String {
    /// Holds something shaped like a whole token secret.
    var containsTokenSecret: Bool {
        range(of: #"ts[po]_[0-9a-f]{128}"#, options: .regularExpression) != nil
    }
}

/// Request helpers: JSON in, status and JSON out.
struct Reply: Sendable {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let text: String

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:] }
    var string: (String) -> String? { { key in json[key] as? String } }
    var tokens: [[String: Any]] { json["tokens"] as? [[String: Any]] ?? [] }
}

extension TestClientProtocol {
    func call(
        _ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json: String? = nil,
        headers extra: HTTPFields = [:]
    ) async throws -> Reply {
        var headers = extra
        if let token { headers[.authorization] = "Bearer \(token)" }
        if json != nil { headers[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
        {
            Reply(status: $0.status, headers: $0.headers, text: String(buffer: $0.body))
        }
    }
}
