import Foundation
import TesseraLocalPostgres
import Testing

/// The private cluster of `make run` and of the test harness (#11): where it lives, and what a
/// failed PostgreSQL tool says. Real initdb and pg_ctl, in throw-away folders.
@Suite struct LocalPostgresTests {
    /// A fresh folder under the system temp folder, removed afterwards.
    /// Off Swift concurrency's threads: initdb and pg_ctl block while they run.
    func withFolder(mode: Int = 0o755, _ body: @escaping @Sendable (String) throws -> Void) async throws {
        try await offloaded { try withFolderNow(mode: mode, body) }
    }

    func withFolderNow(mode: Int, _ body: (String) throws -> Void) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tessera-lp-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: folder)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try body(folder)
    }

    @Test func theCauseIsTheErrorLineNotTheBanner() {
        // initdb as the postgres user under a parent it cannot traverse: its banner goes to stdout,
        // the error to stderr; the banner's last lines used to be all the message showed.
        let output = """
            The files belonging to this database system will be owned by user "postgres".
            This user must also own the server process.

            The database cluster will be initialized with locale "C".
            The default text search configuration will be set to "english".

            Data page checksums are disabled.

            initdb: error: could not access directory "/tmp/tmp.x/tessera/.tessera/postgres": Permission denied
            """
        #expect(
            LocalPostgresError.cause(in: output)
                == #"initdb: error: could not access directory "/tmp/tmp.x/tessera/.tessera/postgres": Permission denied"#
        )
        #expect(LocalPostgresError.cause(in: "one\ntwo\n\nthree\n") == "two | three")
        #expect(LocalPostgresError.cause(in: "") == "no output")
    }

    @Test func aFailedInitdbNamesItsCauseAndItsLog() async throws {
        try await withFolder { folder in
            let data = folder + "/data"
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: data + "/leftover", contents: Data("x".utf8))
            let cluster = try LocalPostgres(dataDirectory: data)
            do {
                try cluster.initializeIfNeeded()
                Issue.record("initdb into a non-empty folder succeeded")
            } catch let error as LocalPostgresError {
                let message = error.description
                #expect(message.hasPrefix("initdb failed with status 1: initdb: error: directory"), "\(message)")
                #expect(message.contains("exists but is not empty"))
                #expect(!message.contains("The files belonging"))
                #expect(message.hasSuffix("(full output in \(data).log)"))
                let log = try String(contentsOfFile: data + ".log", encoding: .utf8)
                #expect(log.contains("initdb -D \(data)") && log.contains("exists but is not empty"))
            }
        }
    }

    @Test func aFailedStartNamesTheServersReason() async throws {
        try await withFolder { folder in
            var cluster = try LocalPostgres(
                dataDirectory: try LocalPostgres.placement(for: folder + "/data"), ephemeral: true)
            defer { try? FileManager.default.removeItem(atPath: cluster.dataDirectory) }
            try cluster.initializeIfNeeded()
            let configuration = cluster.dataDirectory + "/postgresql.conf"
            let handle = try #require(FileHandle(forWritingAtPath: configuration))
            handle.seekToEndOfFile()
            handle.write(Data("\nno_such_setting = 1\n".utf8))
            try handle.close()
            do {
                try cluster.start()
                try? cluster.stop()
                Issue.record("a cluster with a broken configuration started")
            } catch let error as LocalPostgresError {
                let message = error.description
                #expect(message.hasPrefix("pg_ctl start failed with status 1:"), "\(message)")
                #expect(message.contains(#"unrecognized configuration parameter "no_such_setting""#), "\(message)")
                #expect(message.hasSuffix("(full output in \(cluster.serverLog))"))
            }
        }
    }

    /// As root, a folder the postgres user cannot reach (a 0700 parent, as `mktemp -d` makes)
    /// moves the cluster into a folder postgres owns; the user's folder keeps its mode; the cluster
    /// initialises, starts and answers. As a normal user nothing moves.
    @Test func aClusterUnderAClosedParentStillStarts() async throws {
        try await withFolder(mode: 0o700) { folder in
            let requested = folder + "/checkout/.tessera/postgres"
            let directory = try LocalPostgres.placement(for: requested)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            if getuid() == 0 {
                #expect(directory != requested)
                #expect(directory.hasPrefix(NSHomeDirectoryForUser("postgres")! + "/tessera/checkout-"))
                let again = try LocalPostgres.placement(for: requested)
                let other = try LocalPostgres.placement(for: folder + "/other/.tessera/postgres")
                #expect(again == directory, "the same folder every time")
                #expect(other != directory)
            } else {
                #expect(directory == requested)
            }
            var cluster = try LocalPostgres(dataDirectory: directory, ephemeral: true)
            let created = try cluster.initializeIfNeeded()
            #expect(created)
            try cluster.start()
            defer { try? cluster.stop() }
            try cluster.createDatabaseIfNeeded("probe")
            let answer = try cluster.run(
                "psql",
                [
                    "-h", "127.0.0.1", "-p", "\(cluster.port)", "-U", LocalPostgres.superuser, "-d", "probe", "-tAc",
                    "SELECT 42",
                ])
            #expect(answer.trimmingCharacters(in: .whitespacesAndNewlines) == "42")
            let mode = try FileManager.default.attributesOfItem(atPath: folder)[.posixPermissions] as? Int
            #expect(mode == 0o700, "the user's folder was not loosened")
        }
    }

    /// When root's folder is reachable (the system temp folder), the cluster stays where asked.
    @Test func aReachableFolderIsUsedAsIs() async throws {
        try await withFolder { folder in
            let placed = try LocalPostgres.placement(for: folder + "/data")
            #expect(placed == folder + "/data")
        }
    }
}
