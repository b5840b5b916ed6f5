import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraLocalPostgres
import TesseraPostgres

/// One private PostgreSQL cluster per test run, started on first use in a temporary folder on
/// 127.0.0.1 and stopped (folder removed) when the test process exits. Every test gets its own
/// database, copied from a migrated template, so tests run in parallel without seeing each other.
public actor TestPostgres {
    public static let shared = TestPostgres()

    private var setup: Task<LocalPostgres, any Error>?
    private var counter = 0
    private static let template = "tessera_template"

    /// A fresh, migrated database; returns its URL (always on 127.0.0.1).
    public func makeDatabase() async throws -> DatabaseURL {
        try await makeDatabase(prefix: "test", sql: "TEMPLATE \(Self.template)")
    }

    /// An empty database (no migrations), for migration tests.
    public func makeEmptyDatabase() async throws -> DatabaseURL {
        try await makeDatabase(prefix: "empty", sql: "")
    }

    private func makeDatabase(prefix: String, sql: String) async throws -> DatabaseURL {
        let cluster = try await startedCluster()
        counter += 1
        let name = "\(prefix)_\(counter)_\(UInt32.random(in: 0...UInt32.max))"
        var attempts = 0
        while true {
            do {
                _ = try await offloaded {
                    try cluster.run(
                        "psql",
                        [
                            "-h", "127.0.0.1", "-p", "\(cluster.port)", "-U", LocalPostgres.superuser, "-d", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE \(name) \(sql)",
                        ]
                    )
                }
                return try DatabaseURL(cluster.databaseURL(name))
            } catch LocalPostgresError.commandFailed(_, _, let output, _)
                where output.contains("being accessed by other users") && attempts < 50
            {
                // the template's last session is still closing
                attempts += 1
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private func startedCluster() async throws -> LocalPostgres {
        if let setup { return try await setup.value }
        let task = Task { try await Self.startCluster() }
        setup = task
        return try await task.value
    }

    private static func startCluster() async throws -> LocalPostgres {
        // In TMPDIR, or (as root with a TMPDIR the postgres user cannot reach) in a folder it owns.
        let cluster = try await offloaded {
            let directory = try LocalPostgres.placement(
                for: FileManager.default.temporaryDirectory
                    .appendingPathComponent("tessera-test-\(getpid())-\(UUID().uuidString.prefix(8))").path)
            var cluster = try LocalPostgres(dataDirectory: directory, ephemeral: true)
            try cluster.initializeIfNeeded()
            try cluster.start()
            try cluster.stopWhenProcessExits(removeData: true)
            try cluster.createDatabaseIfNeeded(template)
            return cluster
        }
        try await withRunningClient(try DatabaseURL(cluster.databaseURL(template))) { client, logger in
            try await Migrator().migrate(client: client, logger: logger)
        }
        return cluster
    }
}

/// Runs `body` with a `PostgresClient` on `url` that is running, and shuts it down afterwards
/// (no connection is left open).
public func withRunningClient<Result: Sendable>(
    _ url: DatabaseURL, logger: Logger = Logger(label: "tessera.test"),
    _ body: @escaping @Sendable (PostgresClient, Logger) async throws -> Result
) async throws -> Result {
    precondition(url.host == "127.0.0.1" || url.host == "localhost", "tests only ever talk to a local database")
    var backgroundLogger = logger
    backgroundLogger.logLevel = .error
    var configuration = try url.clientConfiguration()
    configuration.options.maximumConnections = 4  // many tests run at once against one cluster
    let client = PostgresClient(configuration: configuration, backgroundLogger: backgroundLogger)
    return try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask {
            await client.run()
            return nil
        }
        defer { group.cancelAll() }
        return try await body(client, logger)
    }
}

extension PostgresClient {
    /// Every value of the single column `query` returns.
    public func values<Value: PostgresDecodable>(_ query: PostgresQuery, as type: Value.Type = Value.self)
        async throws -> [Value]
    {
        var values: [Value] = []
        for try await value in try await self.query(query).decode(Value.self) { values.append(value) }
        return values
    }
}
