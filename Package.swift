// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "tessera",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tessera", targets: ["tessera"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // Domain: tokens, scopes, organizations, authority rules. No HTTP, no SQL.
        .target(
            name: "TesseraCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto")
            ]
        ),
        // The HTTP API's contract: the OpenAPI document (Resources/openapi.json, compiled in).
        .target(
            name: "TesseraAPI",
            resources: [.embedInCode("Resources/openapi.json")]
        ),
        // Private PostgreSQL clusters (initdb, pg_ctl, as `postgres` when root) for `tessera dev`
        // and the tests, and the child-process runner they use. Not used by `tessera serve`.
        .target(
            name: "TesseraLocalPostgres",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // PostgresNIO store and repositories, migrations, SQL scripts, connection leases.
        .target(
            name: "TesseraPostgres",
            dependencies: [
                "TesseraCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The verification hot path: verifier, cache, lookup batcher, standby reads, the
        // invalidation listener, last-used recording.
        .target(
            name: "TesseraVerification",
            dependencies: [
                "TesseraCore",
                "TesseraPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Webhook delivery (signed, retried, from the outbox) and the target policy (no private
        // addresses, checked on the address connected to).
        .target(
            name: "TesseraWebhooks",
            dependencies: [
                "TesseraCore",
                "TesseraPostgres",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // One type per domain operation (tokens, organizations, members, users, webhooks, CLI
        // login, leak reports): validation, one transaction, its audit events; throws DomainError.
        .target(
            name: "TesseraServices",
            dependencies: [
                "TesseraCore",
                "TesseraPostgres",
                "TesseraVerification",
                "TesseraWebhooks",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Hummingbird application (buildApplication, the one seam), middleware, authentication,
        // problem+json errors, the REST API's thin controllers; other faces plug in as Surfaces.
        .target(
            name: "TesseraHTTP",
            dependencies: [
                "TesseraAPI",
                "TesseraCore",
                "TesseraPostgres",
                "TesseraServices",
                "TesseraVerification",
                "TesseraWebhooks",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The web console: pages, view models, sessions, CSRF, the OIDC client. Its templates and
        // static files are web/ (found at run time beside the binary, as sql/ is).
        .target(
            name: "TesseraConsole",
            dependencies: [
                "TesseraCore",
                "TesseraFederation",
                "TesseraHTTP",
                "TesseraPostgres",
                "TesseraServices",
                "TesseraVerification",
                "TesseraWebhooks",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // BentoCloud's API-token surface (/api/v1) and the browser login of command-line clients.
        .target(
            name: "TesseraBentoCloud",
            dependencies: [
                "TesseraAPI",
                "TesseraCore",
                "TesseraHTTP",
                "TesseraPostgres",
                "TesseraServices",
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        // Identity from the IdP: the SCIM 2.0 service provider of each organization (a Surface),
        // its filters and PATCH engine, provisioning in one transaction per request.
        .target(
            name: "TesseraIdentity",
            dependencies: [
                "TesseraCore",
                "TesseraHTTP",
                "TesseraPostgres",
                "TesseraServices",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [
                .embedInCode("Resources/scim-schemas.json"),
                .embedInCode("Resources/scim-resource-types.json"),
                .embedInCode("Resources/scim-service-provider-config.json"),
            ]
        ),
        // Workload identity federation (a Surface): trust policies, the RFC 8693 exchange at
        // /oauth/token, issuer discovery and key caching, subject-token validation (RFC 8725).
        .target(
            name: "TesseraFederation",
            dependencies: [
                "TesseraAPI",
                "TesseraCore",
                "TesseraHTTP",
                "TesseraPostgres",
                "TesseraServices",
                "TesseraVerification",
                "TesseraWebhooks",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "tessera",
            dependencies: [
                "TesseraAPI",
                "TesseraCore",
                "TesseraPostgres",
                "TesseraHTTP",
                "TesseraConsole",
                "TesseraBentoCloud",
                "TesseraIdentity",
                "TesseraFederation",
                "TesseraServices",
                "TesseraVerification",
                "TesseraWebhooks",
                "TesseraLocalPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Ephemeral PostgreSQL per test run, one database per test, fixtures.
        .target(
            name: "TesseraTestSupport",
            dependencies: [
                "TesseraCore",
                "TesseraLocalPostgres",
                "TesseraPostgres",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "TesseraCoreTests", dependencies: ["TesseraCore"]),
        .testTarget(name: "TesseraIdentityTests", dependencies: ["TesseraIdentity"]),
        .testTarget(name: "TesseraLocalPostgresTests", dependencies: ["TesseraLocalPostgres"]),
        .testTarget(
            name: "TesseraPostgresTests",
            dependencies: [
                "TesseraPostgres", "TesseraServices", "TesseraVerification", "TesseraTestSupport", "TesseraCore",
            ]
        ),
        .testTarget(
            name: "TesseraVerificationTests",
            dependencies: [
                "TesseraVerification", "TesseraPostgres", "TesseraTestSupport", "TesseraCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "TesseraWebhooksTests",
            dependencies: [
                "TesseraWebhooks",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "TesseraHTTPTests",
            dependencies: [
                "TesseraHTTP", "TesseraTestSupport", "TesseraCore", "TesseraPostgres", "TesseraVerification",
                "TesseraWebhooks", "TesseraServices", "TesseraConsole", "TesseraBentoCloud", "TesseraIdentity",
                "TesseraFederation",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        // Runs the built `tessera` binary as a user would.
        .testTarget(
            name: "TesseraCLITests",
            dependencies: [
                "TesseraTestSupport", "TesseraCore", "TesseraPostgres", "TesseraLocalPostgres", "TesseraServices",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
    ]
)
