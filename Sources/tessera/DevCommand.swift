import ArgumentParser
import Foundation
import Logging
import TesseraPostgres

/// What `make run` runs: a private PostgreSQL under `--data` when `DATABASE_URL` is unset,
/// migrations, a demo organization bootstrapped once (its admin token printed that one time),
/// then the server. The cluster is stopped when the server stops; its data stays for next time.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run everything locally: private PostgreSQL, migrations, demo org, server."
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    @Option(help: "Folder for the private PostgreSQL cluster (used when DATABASE_URL is unset).")
    var data = ".tessera"

    @Option(help: "Slug of the demo organization.")
    var org = "demo"

    @Option(help: "Username of the demo admin.")
    var admin = "admin"

    func run() async throws {
        let logger = Logger(label: "tessera.dev")
        let serverConfiguration = try server.configuration()
        var local: LocalPostgres?
        let url: DatabaseURL
        if database.databaseURL != nil || !(ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "").isEmpty {
            url = try database.resolvedURL()
        } else {
            url = try startLocalPostgres(&local, logger: logger)
        }
        defer {
            if let local {
                logger.info("stopping the private PostgreSQL")
                try? local.stop()
            }
        }
        let migrator = try loadMigrator(nil)
        let bootstrap = try await withDatabase(url, logger: logger) { client -> BootstrapResult? in
            try await ensureMigrated(migrator, migrate: true, client: client, logger: logger)
            let store = TesseraStore(client: client, logger: logger)
            if try await store.organizationExists(org) { return nil }
            return try await store.bootstrap(organization: org, displayName: "Demo organization", admin: admin)
        }
        let base = "http://\(serverConfiguration.host):\(serverConfiguration.port)"
        let banner =
            bootstrap?.text
            ?? "Organization \"\(org)\" already exists; its admin token was printed on the first run (it is never shown again)."
        print(
            """

            Tessera at \(base)  (database \(url))
            \(banner)

            Try:
              curl \(base)/readyz
              curl -H "Authorization: Bearer \(bootstrap?.token.plaintext ?? "$TOKEN")" \(base)/api-tokens

            """)
        fflush(nil)
        try await serve(url: url, server: serverConfiguration, migrate: false, migrations: nil)
    }

    private func startLocalPostgres(_ local: inout LocalPostgres?, logger: Logger) throws -> DatabaseURL {
        let directory = URL(fileURLWithPath: data).standardizedFileURL.path + "/postgres"
        do {
            var cluster = try LocalPostgres(dataDirectory: directory)
            if try cluster.initializeIfNeeded() {
                logger.info("created a private PostgreSQL cluster", metadata: ["data": "\(directory)"])
            }
            try cluster.start()
            local = cluster
            try cluster.createDatabaseIfNeeded("tessera")
            logger.info("private PostgreSQL running", metadata: ["port": "\(cluster.port)"])
            return try DatabaseURL(cluster.databaseURL("tessera"))
        } catch let error as LocalPostgresError {
            throw CLIError(message: "cannot start the private PostgreSQL: \(error)")
        }
    }
}
