import ArgumentParser
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import TesseraBentoCloud
import TesseraConsole
import TesseraCore
import TesseraFederation
import TesseraHTTP
import TesseraIdentity
import TesseraPostgres
import TesseraVerification
import TesseraWebhooks

#if canImport(Glibc)
    import Glibc
#endif

/// `--host`/`--port`, defaulting to `TESSERA_HOST` (127.0.0.1) and `TESSERA_PORT` (8080).
struct ServerOptions: ParsableArguments {
    @Option(help: "Address to listen on (default: $TESSERA_HOST or 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on (default: $TESSERA_PORT or 8080).")
    var port: Int?

    /// The server's settings and the console's (nil: `TESSERA_CONSOLE=off`).
    func settings() throws -> ServeSettings {
        ServeSettings(server: try configuration(), console: try Self.console(ProcessInfo.processInfo.environment))
    }

    func configuration() throws -> ServerConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let host = host ?? environment["TESSERA_HOST"] ?? "127.0.0.1"
        let port: Int
        if let explicit = self.port {
            port = explicit
        } else if let raw = environment["TESSERA_PORT"] {
            guard let parsed = Int(raw) else { throw CLIError(message: "TESSERA_PORT=\(raw) is not a port number") }
            port = parsed
        } else {
            port = 8080
        }
        guard (0...65535).contains(port) else { throw CLIError(message: "port \(port) is out of range 0-65535") }
        var cache = VerificationCacheSettings()
        if let raw = environment["TESSERA_CACHE_TTL"] {
            guard let seconds = Int(raw), seconds >= 0, seconds <= 3600 else {
                throw CLIError(
                    message: "TESSERA_CACHE_TTL=\(raw) is not a number of seconds from 0 (cache off) to 3600")
            }
            cache.ttl = .seconds(seconds)
            cache.negativeTTL = .seconds(min(seconds, 5))
        }
        if let raw = environment["TESSERA_CACHE_MAX_ENTRIES"] {
            guard let entries = Int(raw), entries >= 0, entries <= 10_000_000 else {
                throw CLIError(message: "TESSERA_CACHE_MAX_ENTRIES=\(raw) is not a number from 0 to 10000000")
            }
            cache.maxEntries = entries
        }
        var lookupTimeout: Duration? = .seconds(1)
        if let raw = environment["TESSERA_VERIFY_TIMEOUT_MS"] {
            guard let millis = Int(raw), millis >= 0, millis <= 60_000 else {
                throw CLIError(
                    message:
                        "TESSERA_VERIFY_TIMEOUT_MS=\(raw) is not a number of milliseconds from 0 (no limit) to 60000")
            }
            lookupTimeout = millis == 0 ? nil : .milliseconds(millis)
        }
        var configuration = ServerConfiguration(host: host, port: port, cache: cache, lookupTimeout: lookupTimeout)
        if let raw = environment["TESSERA_DB_STATEMENTS"], !raw.isEmpty {
            guard let mode = StatementMode(rawValue: raw) else {
                throw CLIError(message: "TESSERA_DB_STATEMENTS=\(raw) is not prepared or unnamed")
            }
            configuration.statements = mode
        }
        if let raw = environment["TESSERA_STANDBY_RECHECKS_PER_SECOND"], !raw.isEmpty {
            guard let rate = Double(raw), rate >= 0, rate <= 100_000 else {
                throw CLIError(message: "TESSERA_STANDBY_RECHECKS_PER_SECOND=\(raw) is not a number from 0 to 100000")
            }
            configuration.standbyRechecksPerSecond = rate
        }
        if let raw = environment["TESSERA_VERIFY_LOOKUPS_IN_FLIGHT"], !raw.isEmpty {
            guard let count = Int(raw), (1...1000).contains(count) else {
                throw CLIError(message: "TESSERA_VERIFY_LOOKUPS_IN_FLIGHT=\(raw) is not a number from 1 to 1000")
            }
            configuration.lookupsInFlight = count
        }
        if let raw = environment["TESSERA_DB_LEASE_TIMEOUT_MS"], !raw.isEmpty {
            guard let millis = Int(raw), millis >= 0, millis <= 600_000 else {
                throw CLIError(
                    message:
                        "TESSERA_DB_LEASE_TIMEOUT_MS=\(raw) is not a number of milliseconds from 0 (no limit) to 600000"
                )
            }
            configuration.leaseTimeout = millis == 0 ? nil : .milliseconds(millis)
        }
        configuration.webhooks = try Self.webhooks(environment)
        if let raw = environment["TESSERA_CREDENTIALS_REVOKE_PER_MINUTE"], !raw.isEmpty {
            guard let count = Int(raw), (1...100_000).contains(count) else {
                throw CLIError(message: "TESSERA_CREDENTIALS_REVOKE_PER_MINUTE=\(raw) is not a number from 1 to 100000")
            }
            configuration.credentialsRevokePerMinute = count
        }
        try Self.leastPrivilege(environment, into: &configuration)
        return configuration
    }

    /// `TESSERA_WEBHOOKS` (on|off, default on: this replica delivers webhooks and sweeps expiry
    /// notices), `TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS` (false), `TESSERA_WEBHOOKS_RETRY_BASE_MS`
    /// (5000), `TESSERA_EXPIRY_SWEEP_SECONDS` (60).
    static func webhooks(_ environment: [String: String]) throws -> WebhookSettings {
        var settings = WebhookSettings()
        if let raw = environment["TESSERA_WEBHOOKS"], !raw.isEmpty {
            guard ["on", "off"].contains(raw) else {
                throw CLIError(message: "TESSERA_WEBHOOKS=\(raw) is not on or off")
            }
            settings.deliver = raw == "on"
        }
        if let raw = environment["TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS"], !raw.isEmpty {
            guard let allow = Bool(raw) else {
                throw CLIError(message: "TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=\(raw) is not true or false")
            }
            settings.allowPrivateTargets = allow
        }
        if let raw = environment["TESSERA_WEBHOOKS_RETRY_BASE_MS"], !raw.isEmpty {
            guard let millis = Int(raw), (10...3_600_000).contains(millis) else {
                throw CLIError(
                    message: "TESSERA_WEBHOOKS_RETRY_BASE_MS=\(raw) is not a number of milliseconds from 10 to 3600000")
            }
            settings.retryBase = .milliseconds(millis)
        }
        if let raw = environment["TESSERA_EXPIRY_SWEEP_SECONDS"], !raw.isEmpty {
            guard let seconds = Int(raw), (1...86_400).contains(seconds) else {
                throw CLIError(
                    message: "TESSERA_EXPIRY_SWEEP_SECONDS=\(raw) is not a number of seconds from 1 to 86400")
            }
            settings.expirySweepInterval = .seconds(seconds)
        }
        return settings
    }

    /// `TESSERA_USAGE` (on|off, default on), `TESSERA_USAGE_FLUSH_SECONDS` (60: last use and usage
    /// are written once per interval), `TESSERA_USAGE_RETENTION_DAYS` (365),
    /// `TESSERA_TRUSTED_PROXIES` (comma-separated CIDRs; default none).
    static func leastPrivilege(_ environment: [String: String], into configuration: inout ServerConfiguration) throws {
        if let raw = environment["TESSERA_USAGE"], !raw.isEmpty {
            guard ["on", "off"].contains(raw) else { throw CLIError(message: "TESSERA_USAGE=\(raw) is not on or off") }
            configuration.usageCounting = raw == "on"
        }
        if let raw = environment["TESSERA_USAGE_FLUSH_SECONDS"], !raw.isEmpty {
            guard let seconds = Int(raw), (1...3600).contains(seconds) else {
                throw CLIError(message: "TESSERA_USAGE_FLUSH_SECONDS=\(raw) is not a number of seconds from 1 to 3600")
            }
            configuration.lastUsedFlushInterval = .seconds(seconds)
        }
        if let raw = environment["TESSERA_USAGE_RETENTION_DAYS"], !raw.isEmpty {
            guard let days = Int(raw), (31...36_500).contains(days) else {
                throw CLIError(message: "TESSERA_USAGE_RETENTION_DAYS=\(raw) is not a number of days from 31 to 36500")
            }
            configuration.usageRetentionDays = days
        }
        if let raw = environment["TESSERA_TRUSTED_PROXIES"], !raw.isEmpty {
            do {
                configuration.trustedProxies = try [AddressRange].checked(
                    raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            } catch {
                throw CLIError(message: "TESSERA_TRUSTED_PROXIES: \(error.message)")
            }
        }
    }

    /// `TESSERA_CONSOLE` (on|off, default on), `TESSERA_CONSOLE_IDLE_MINUTES` (120),
    /// `TESSERA_CONSOLE_ABSOLUTE_HOURS` (12), `TESSERA_COOKIE_SECURE` (auto|true|false: auto means
    /// off on loopback only), `TESSERA_WEB_DIR` (the templates and static files).
    static func console(_ environment: [String: String]) throws -> ConsoleSettings? {
        switch environment["TESSERA_CONSOLE"] ?? "on" {
        case "on", "true", "1", "": break
        case "off", "false", "0": return nil
        case let other: throw CLIError(message: "TESSERA_CONSOLE=\(other) is not on or off")
        }
        var settings = ConsoleSettings()
        if let raw = environment["TESSERA_CONSOLE_IDLE_MINUTES"] {
            guard let minutes = Int(raw), (1...10_080).contains(minutes) else {
                throw CLIError(
                    message: "TESSERA_CONSOLE_IDLE_MINUTES=\(raw) is not a number of minutes from 1 to 10080")
            }
            settings.idleTimeout = .seconds(minutes * 60)
        }
        if let raw = environment["TESSERA_CONSOLE_ABSOLUTE_HOURS"] {
            guard let hours = Int(raw), (1...720).contains(hours) else {
                throw CLIError(message: "TESSERA_CONSOLE_ABSOLUTE_HOURS=\(raw) is not a number of hours from 1 to 720")
            }
            settings.absoluteTimeout = .seconds(hours * 3600)
        }
        switch environment["TESSERA_COOKIE_SECURE"] ?? "auto" {
        case "auto", "": settings.secureCookies = nil
        case "true", "on": settings.secureCookies = true
        case "false", "off": settings.secureCookies = false
        case let other: throw CLIError(message: "TESSERA_COOKIE_SECURE=\(other) is not auto, true or false")
        }
        settings.directory = environment["TESSERA_WEB_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        func value(_ key: String) -> String? { environment[key].flatMap { $0.isEmpty ? nil : $0 } }
        if let issuer = value("TESSERA_OIDC_ISSUER") {
            guard let clientID = value("TESSERA_OIDC_CLIENT_ID") else {
                throw CLIError(message: "TESSERA_OIDC_ISSUER is set but TESSERA_OIDC_CLIENT_ID is not")
            }
            guard
                issuer.hasPrefix("https://") || issuer.hasPrefix("http://127.0.0.1")
                    || issuer.hasPrefix("http://localhost")
            else {
                throw CLIError(message: "TESSERA_OIDC_ISSUER=\(issuer) must be an https:// URL (http only on loopback)")
            }
            settings.oidc = OIDCSettings(
                issuer: issuer, clientID: clientID, clientSecret: value("TESSERA_OIDC_CLIENT_SECRET"),
                usernameClaim: value("TESSERA_OIDC_USERNAME_CLAIM") ?? "preferred_username",
                publicURL: value("TESSERA_PUBLIC_URL"))
            settings.oidc?.groupsClaim = value("TESSERA_OIDC_GROUPS_CLAIM") ?? "groups"
            switch value("TESSERA_OIDC_JIT") ?? "false" {
            case "true": settings.oidc?.justInTime = true
            case "false": break
            case let other: throw CLIError(message: "TESSERA_OIDC_JIT=\(other) is not true or false")
            }
        }
        return settings
    }
}

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the HTTP API (refuses a database with pending migrations unless --migrate)."
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    @Flag(help: "Apply pending migrations before serving.")
    var migrate = false

    @Option(help: "Folder of migrations (see `tessera migrate --help`).")
    var migrations: String?

    func run() async throws {
        try await serve(
            url: try database.resolvedURL(), settings: try server.settings(), migrate: migrate,
            migrations: migrations)
    }
}

/// Checks the schema, then serves until SIGINT or SIGTERM.
/// What `tessera serve` and `tessera dev` run: the application's settings, and the console's.
struct ServeSettings {
    var server: ServerConfiguration
    var console: ConsoleSettings?
}

func serve(url: DatabaseURL, settings: ServeSettings, migrate: Bool, migrations: String?) async throws {
    pinMallocThresholds()
    let server = settings.server
    let logger = Logger(label: "tessera")
    let migrator = try loadMigrator(migrations)
    try await withDatabase(url, logger: logger) { client in
        try await ensureMigrated(migrator, migrate: migrate, client: client, logger: logger)
    }
    let client = PostgresClient(configuration: try poolConfiguration(url), backgroundLogger: logger)
    let environment = ProcessInfo.processInfo.environment
    func optionalURL(_ name: String) throws -> DatabaseURL? {
        guard let raw = environment[name], !raw.isEmpty else { return nil }
        do {
            return try DatabaseURL(raw)
        } catch {
            throw CLIError(message: "\(name): \(error)")
        }
    }
    // DESIGN §10: misses may go to standbys; the listener needs a session a standby or a
    // transaction-pooling PgBouncer cannot give, so it may have a URL of its own.
    let standby = try optionalURL("DATABASE_READ_URL").map {
        PostgresClient(configuration: try poolConfiguration($0), backgroundLogger: logger)
    }
    let listen = try optionalURL("DATABASE_LISTEN_URL") ?? url
    do {
        let federation: FederationSettings
        do {
            federation = try FederationSettings.fromEnvironment(environment)
        } catch {
            throw CLIError(message: error.description)
        }
        var surfaces: [any Surface] = [
            BentoCloudSurface(), SCIMSurface(),
            FederationSurface(settings: federation, server: server, client: client, logger: logger),
        ]
        if let console = settings.console {
            surfaces.append(
                try await ConsoleSurface(
                    settings: console, server: server, client: client, logger: logger, federation: federation))
        }
        let app = try await buildApplication(
            configuration: server, client: client, migrator: migrator, logger: logger, jwt: .fromEnvironment(),
            notifications: try listen.connectionConfiguration(), lookups: try url.connectionConfiguration(),
            standby: standby, surfaces: surfaces)
        try await app.runService()
    } catch let error as JWTConfigurationError {
        throw CLIError(message: error.description)
    }
}

/// The server's pool: up to `TESSERA_DB_POOL_SIZE` connections (default three per core, at least
/// four: more backends than PostgreSQL's cores can run only queue inside it; on 2 cores token
/// creation at 32 clients ran 1,140-1,293/s with p99 34-42 ms at 6 connections, against
/// 1,037-1,231/s and p99 89-103 ms at 16 and p99 286-378 ms at 32, issue #24), no keep-alive,
/// and a 5 s idle timeout. PostgresNIO 1.33 arms its keep-alive (30 s) and idle (60 s) timers each
/// time a connection goes idle and cancels them at the next lease; a cancelled `Task.sleep` keeps
/// its memory until its deadline (swiftlang/swift#60441), so a busy pool held ~90 s worth of dead
/// timers and RSS kept rising (issue #14). Without keep-alive and with a 5 s idle timeout, at
/// most 5 s of timers are alive. The minimum stays 0: with `minimumConnections > 0`, a lease
/// while connections are failing trips a precondition in the pool and crashes the process
/// (`minimumConcurrentConnections <= stats.active`, seen in a Patroni failover, issue #15).
func poolConfiguration(_ url: DatabaseURL, environment: [String: String] = ProcessInfo.processInfo.environment) throws
    -> PostgresClient.Configuration
{
    var configuration = try url.clientConfiguration()
    var size = max(4, 3 * ProcessInfo.processInfo.activeProcessorCount)
    if let raw = environment["TESSERA_DB_POOL_SIZE"], !raw.isEmpty {
        guard let parsed = Int(raw), (1...200).contains(parsed) else {
            throw CLIError(message: "TESSERA_DB_POOL_SIZE=\(raw) is not a number of connections from 1 to 200")
        }
        size = parsed
    }
    configuration.options.minimumConnections = 0
    configuration.options.maximumConnections = size
    configuration.options.connectionIdleTimeout = .seconds(5)
    configuration.options.keepAliveBehavior = nil
    return configuration
}

/// glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
/// large arrays and dictionaries (the cache's slot array and indexes as they grow, usage batches)
/// come from the heap, whose holes are rarely handed back; and it gives each of up to 8 × cores
/// threads its own arena, each keeping its own free memory. Pinned at 128 KiB, a large block is
/// mapped and unmapped on its own, and one arena per core is enough for a server whose event
/// loops and task pool have a thread per core: RSS follows what is live (issue #24; a million
/// cached tokens cost 361–525 bytes each with the defaults, varying run to run).
/// `GLIBC_TUNABLES` or `MALLOC_ARENA_MAX` in the environment override these.
func pinMallocThresholds() {
    #if canImport(Glibc)
        let environment = ProcessInfo.processInfo.environment
        if environment["GLIBC_TUNABLES"]?.contains("malloc") != true {
            _ = glibcMallopt(-3, 128 * 1024)  // M_MMAP_THRESHOLD in <malloc.h>
            if environment["MALLOC_ARENA_MAX"] == nil {
                _ = glibcMallopt(-8, Int32(max(2, ProcessInfo.processInfo.activeProcessorCount)))  // M_ARENA_MAX
            }
        }
    #endif
}

#if canImport(Glibc)
    /// `int mallopt(int, int)` from <malloc.h>, which the Glibc module does not bring in.
    @_silgen_name("mallopt")
    private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif
