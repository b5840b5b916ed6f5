import Crypto
import Foundation

/// A private PostgreSQL cluster on 127.0.0.1, for `make run`, the test suite and benchmarks.
///
/// It runs the server binaries of the machine (`TESSERA_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`) with `initdb --auth=trust` into ``dataDirectory``,
/// listening on loopback only, without a unix socket. PostgreSQL refuses to run as root, so when
/// we are root the binaries run as the `postgres` system user (created by Debian's package, which
/// `scripts/ensure-postgres` installs on a fresh machine); ``placement(for:)`` then moves a cluster
/// that user could not reach into a folder it owns.
public struct LocalPostgres: Sendable {
    public static let superuser = "tessera"

    public let dataDirectory: String
    public let binDirectory: String
    /// Trade durability for speed (fsync off): right for throw-away test clusters only.
    public let ephemeral: Bool
    public private(set) var port: Int = 0

    public init(dataDirectory: String, ephemeral: Bool = false) throws {
        self.dataDirectory = dataDirectory
        self.binDirectory = try Self.locateBinaries()
        self.ephemeral = ephemeral
    }

    /// Connection settings for `database` on this cluster.
    public func databaseURL(_ database: String) -> String {
        "postgres://\(Self.superuser)@127.0.0.1:\(port)/\(database)?sslmode=disable"
    }

    /// Where a failed tool's whole output is appended (next to the data folder, never inside it:
    /// initdb may have failed to create that).
    public var failureLog: String { dataDirectory + ".log" }

    /// The server's own log, where the cause of a failed start is.
    public var serverLog: String { dataDirectory + "/server.log" }

    public var isInitialized: Bool {
        FileManager.default.fileExists(atPath: dataDirectory + "/PG_VERSION")
    }

    /// Runs `initdb` unless the directory already holds a cluster. Returns true when it created one.
    @discardableResult
    public func initializeIfNeeded() throws -> Bool {
        guard !isInitialized else { return false }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        try handOverToServerUser(dataDirectory)
        try run(
            "initdb",
            [
                "-D", dataDirectory, "-U", Self.superuser, "--auth=trust", "--encoding=UTF8", "--locale=C",
                "--no-instructions",
            ]
        )
        return true
    }

    /// Starts the server on a free loopback port, stopping a leftover server of a crashed run first.
    public mutating func start() throws {
        if isRunning { try stop() }
        var lastError: (any Error)?
        for _ in 0..<5 {
            let candidate = Int.random(in: 20_000...60_000)
            var options =
                "-p \(candidate) -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
            if ephemeral {
                // Test clusters: many databases and clients at once (every test has its own).
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=800"
            }
            let logStart = Self.fileSize(serverLog)
            do {
                try run("pg_ctl", ["-D", dataDirectory, "-l", serverLog, "-w", "-t", "60", "-o", options, "start"])
                port = candidate
                return
            } catch LocalPostgresError.commandFailed(_, let status, let output, _) {
                // The cause is in the server's log, not in pg_ctl's "could not start server".
                let serverOutput = Self.read(serverLog, from: logStart)
                let error = LocalPostgresError.commandFailed(
                    command: "pg_ctl start", status: status, output: output + "\n" + serverOutput, log: serverLog)
                guard serverOutput.contains("already in use") else { throw error }
                lastError = error  // the port was taken: try another one
            }
        }
        throw lastError
            ?? LocalPostgresError.commandFailed(command: "pg_ctl start", status: -1, output: "", log: serverLog)
    }

    /// `pg_ctl status` (its "no server running" is an answer, not a failure to log).
    public var isRunning: Bool {
        (try? run("pg_ctl", ["-D", dataDirectory, "status"], logFailure: false)) != nil
    }

    /// Fast shutdown: active sessions are disconnected, data is flushed.
    public func stop() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-m", "fast", "-w", "-t", "60", "stop"])
    }

    /// Creates `database` unless it exists.
    public func createDatabaseIfNeeded(_ database: String) throws {
        let exists = try run(
            "psql",
            [
                "-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, "-d", "postgres", "-tAc",
                "SELECT 1 FROM pg_database WHERE datname = '\(database.replacingOccurrences(of: "'", with: "''"))'",
            ]
        )
        if exists.trimmingCharacters(in: .whitespacesAndNewlines) != "1" {
            try run("createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, database])
        }
    }

    // MARK: - Processes

    /// Runs one of the cluster's tools (as `postgres` when we are root); throws with its output on failure.
    @discardableResult
    public func run(_ tool: String, _ arguments: [String], logFailure: Bool = true) throws -> String {
        let executable = binDirectory + "/" + tool
        let outcome =
            getuid() == 0
            // From `/`: a working directory the postgres user cannot enter (a checkout in a 0700
            // folder) would add "could not change directory" to every tool's output.
            ? try Subprocess.run(
                "/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/bin/env", "-C", "/", executable] + arguments)
            : try Subprocess.run(executable, arguments)
        guard outcome.status == 0 else {
            let output = outcome.stdout + "\n" + outcome.stderr
            let logged =
                logFailure
                && Self.append(
                    "\(Date()) \(tool) \(arguments.joined(separator: " ")) exited with status \(outcome.status)\n\(output)\n",
                    to: failureLog)
            throw LocalPostgresError.commandFailed(
                command: tool, status: outcome.status, output: output, log: logged ? failureLog : nil)
        }
        return outcome.stdout
    }

    private static func append(_ text: String, to path: String) -> Bool {
        guard
            FileManager.default.fileExists(atPath: path) || FileManager.default.createFile(atPath: path, contents: nil),
            let handle = FileHandle(forWritingAtPath: path)
        else { return false }
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        handle.write(Data(text.utf8))
        return true
    }

    private static func fileSize(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    private static func read(_ path: String, from offset: UInt64) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        handle.seek(toFileOffset: offset)
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }

    private func handOverToServerUser(_ path: String) throws {
        guard getuid() == 0 else { return }
        try FileManager.default.setAttributes(
            [.ownerAccountName: "postgres", .posixPermissions: 0o700],
            ofItemAtPath: path
        )
    }

    static func locateBinaries() throws -> String {
        let fileManager = FileManager.default
        if let configured = ProcessInfo.processInfo.environment["TESSERA_PG_BIN"], !configured.isEmpty {
            return configured
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? fileManager.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init)
            .sorted(by: >)
        for version in versions where fileManager.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        where fileManager.isExecutableFile(atPath: "\(directory)/initdb") {
            return String(directory)
        }
        throw LocalPostgresError.binariesNotFound
    }
}

public enum LocalPostgresError: Error, CustomStringConvertible {
    case binariesNotFound
    /// `log` is the file holding the whole output (nil when it could not be written).
    case commandFailed(command: String, status: Int32, output: String, log: String?)

    public var description: String {
        switch self {
        case .binariesNotFound:
            "PostgreSQL server binaries not found (looked in TESSERA_PG_BIN, /usr/lib/postgresql/*/bin and PATH); "
                + "run scripts/ensure-postgres or `apt-get install postgresql`"
        case .commandFailed(let command, let status, let output, let log):
            "\(command) failed with status \(status): \(Self.cause(in: output))"
                + (log.map { " (full output in \($0))" } ?? "")
        }
    }

    /// The lines of a tool's output that say what went wrong: the last two that read like an
    /// error (`initdb: error: …`, `FATAL: …`, "Permission denied"), else the last two lines. The
    /// banners PostgreSQL's tools print first ("The files belonging to this database system…")
    /// never hide the cause.
    public static func cause(in output: String) -> String {
        let lines = output.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        let markers = [
            "error", "fatal", "panic", "denied", "could not", "cannot", "not permitted", "no such", "invalid",
            "unrecognized",
        ]
        let errors = lines.filter { line in
            let lowered = line.lowercased()
            return markers.contains { lowered.contains($0) }
        }
        let chosen = (errors.isEmpty ? lines : errors).suffix(2)
        return chosen.isEmpty ? "no output" : chosen.joined(separator: " | ")
    }
}

extension LocalPostgres {
    /// Starts a detached watcher that stops this cluster (and deletes its folder when asked) once
    /// process `pid` is gone, even after a crash or `kill -9`: test and benchmark clusters never
    /// outlive the run that made them.
    public func stopWhenProcessExits(_ pid: Int32 = getpid(), removeData: Bool) throws {
        let pgCtl = (getuid() == 0 ? "/usr/sbin/runuser -u postgres -- " : "") + "'\(binDirectory)/pg_ctl'"
        let script = """
            cd /
            while kill -0 \(pid) 2>/dev/null; do sleep 0.5; done
            \(pgCtl) -D '\(dataDirectory)' -m immediate -w stop >/dev/null 2>&1
            \(removeData ? "rm -rf '\(dataDirectory)' '\(failureLog)'" : "")
            """
        try Subprocess.detach("/bin/sh", ["-c", script])
    }
}

extension LocalPostgres {
    /// The account the server binaries run as: `postgres` when we are root (PostgreSQL refuses
    /// root), else ourselves (nil).
    static var serverUser: String? { getuid() == 0 ? "postgres" : nil }

    /// Where a cluster asked for at `requested` lives.
    ///
    /// As a normal user, and as root when the `postgres` user can reach the folder, that is
    /// `requested`. When a parent folder is closed to `postgres` (a checkout under `/root`, in a
    /// `mktemp -d` folder, or a 0700 `TMPDIR`), the cluster goes to a folder `postgres` owns:
    /// `~postgres/tessera/<folder name>-<SHA-256 of requested, 16 hex>`, one per requested path.
    /// The user's folders keep their permissions; callers say where the cluster went.
    public static func placement(for requested: String) throws -> String {
        let requested = URL(fileURLWithPath: requested).standardizedFileURL.path
        guard let user = serverUser, let account = getpwnam(user) else { return requested }
        let parent = URL(fileURLWithPath: requested).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        // `test -x` as the server user: true only if every folder on the way can be traversed.
        let probe = try Subprocess.run("/usr/sbin/runuser", ["-u", user, "--", "/usr/bin/test", "-x", parent])
        if probe.status == 0 { return requested }

        let home = String(cString: account.pointee.pw_dir)
        let base = home + "/tessera"
        if !FileManager.default.fileExists(atPath: base) {
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            try FileManager.default.setAttributes(
                [.ownerAccountName: user, .posixPermissions: 0o700], ofItemAtPath: base)
        }
        let digest = SHA256.hash(data: Data(requested.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        let label = URL(fileURLWithPath: parent).deletingLastPathComponent().lastPathComponent
            .filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
        return base + "/" + (label.isEmpty ? "" : label + "-") + digest
    }
}
