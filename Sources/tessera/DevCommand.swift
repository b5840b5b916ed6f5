import ArgumentParser
import Foundation
import Logging
import TesseraLocalPostgres
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
        let settings = try server.settings()
        let serverConfiguration = settings.server
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

            Tessera at \(base)  (database \(url)\(local.map { ", data in \($0.dataDirectory)" } ?? ""))
            \(settings.console == nil ? "" : "Console:      \(base)/console/  (sign in with the admin token)\n")\(banner)

            Try:
              curl \(base)/readyz
              curl -H "Authorization: Bearer \(bootstrap?.token.plaintext ?? "$TOKEN")" \(base)/api-tokens

            """)
        fflush(nil)
        try await serve(url: url, settings: settings, migrate: false, migrations: nil)
    }

    private func startLocalPostgres(_ local: inout LocalPostgres?, logger: Logger) throws -> DatabaseURL {
        let folder = URL(fileURLWithPath: data).standardizedFileURL.path
        do {
            var cluster = try LocalPostgres(dataDirectory: try clusterDirectory(in: folder))
            if try cluster.initializeIfNeeded() {
                logger.info("created a private PostgreSQL cluster", metadata: ["data": "\(cluster.dataDirectory)"])
            }
            try cluster.start()
            local = cluster
            try cluster.createDatabaseIfNeeded("tessera")
            logger.info(
                "private PostgreSQL running", metadata: ["port": "\(cluster.port)", "data": "\(cluster.dataDirectory)"])
            return try DatabaseURL(cluster.databaseURL("tessera"))
        } catch let error as LocalPostgresError {
            throw CLIError(message: "cannot start the private PostgreSQL: \(error)")
        } catch let error as CocoaError {
            throw CLIError(
                message: "cannot prepare \(folder) for the private PostgreSQL: \(error.localizedDescription)")
        }
    }

    /// `<data>/postgres`, unless we are root and the `postgres` user cannot reach it: then a folder
    /// `postgres` owns (``LocalPostgres/placement(for:)``), named in `<data>/postgres.location` so
    /// that the checkout still owns it. A relocated cluster without that note belongs to a data
    /// folder that was deleted (`make clean-data`, `rm -rf .tessera`): it is removed, and the demo
    /// org is bootstrapped again, exactly as when the cluster lived in the deleted folder.
    private func clusterDirectory(in folder: String) throws -> String {
        let requested = folder + "/postgres"
        let directory = try LocalPostgres.placement(for: requested)
        guard directory != requested else { return requested }
        let note = folder + "/postgres.location"
        if FileManager.default.contents(atPath: note) == nil, FileManager.default.fileExists(atPath: directory) {
            let orphan = try LocalPostgres(dataDirectory: directory)
            if orphan.isRunning { try? orphan.stop() }
            try FileManager.default.removeItem(atPath: directory)
        }
        try Data((directory + "\n").utf8).write(to: URL(fileURLWithPath: note))
        print(
            """
            The postgres user cannot reach \(requested) (a parent folder is closed to it), so the private
            PostgreSQL cluster lives in \(directory) (noted in \(note); `make clean-data` removes both).
            """)
        return directory
    }
}
