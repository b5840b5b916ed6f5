import Foundation

/// A private PostgreSQL cluster on 127.0.0.1, for `make run`, the test suite and benchmarks.
///
/// It runs the server binaries of the machine (`TESSERA_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`) with `initdb --auth=trust` into ``dataDirectory``,
/// listening on loopback only, without a unix socket. PostgreSQL refuses to run as root, so when
/// we are root the binaries run as the `postgres` system user (created by Debian's package, which
/// `scripts/ensure-postgres` installs on a fresh machine).
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
            ["-D", dataDirectory, "-U", Self.superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"]
        )
        return true
    }

    /// Starts the server on a free loopback port, stopping a leftover server of a crashed run first.
    public mutating func start() throws {
        if isRunning { try stop() }
        var lastError: (any Error)?
        for _ in 0..<5 {
            let candidate = Int.random(in: 20_000...60_000)
            var options = "-p \(candidate) -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
            if ephemeral {
                // Test clusters: many databases and clients at once (every test has its own).
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500"
            }
            do {
                try run("pg_ctl", ["-D", dataDirectory, "-l", dataDirectory + "/server.log", "-w", "-t", "60", "-o", options, "start"])
                port = candidate
                return
            } catch {
                lastError = error  // most likely the port was taken: try another one
            }
        }
        throw lastError ?? LocalPostgresError.commandFailed(command: "pg_ctl start", status: -1, output: "")
    }

    public var isRunning: Bool {
        (try? run("pg_ctl", ["-D", dataDirectory, "status"])) != nil
    }

    /// Fast shutdown: active sessions are disconnected, data is flushed.
    public func stop() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-m", "fast", "-w", "-t", "60", "stop"])
    }

    /// Creates `database` unless it exists.
    public func createDatabaseIfNeeded(_ database: String) throws {
        let exists = try run(
            "psql",
            ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, "-d", "postgres", "-tAc",
             "SELECT 1 FROM pg_database WHERE datname = '\(database.replacingOccurrences(of: "'", with: "''"))'"]
        )
        if exists.trimmingCharacters(in: .whitespacesAndNewlines) != "1" {
            try run("createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, database])
        }
    }

    // MARK: - Processes

    /// Runs one of the cluster's tools (as `postgres` when we are root); throws with its output on failure.
    @discardableResult
    public func run(_ tool: String, _ arguments: [String]) throws -> String {
        let executable = binDirectory + "/" + tool
        let outcome =
            getuid() == 0
            ? try Subprocess.run("/usr/sbin/runuser", ["-u", "postgres", "--", executable] + arguments)
            : try Subprocess.run(executable, arguments)
        guard outcome.status == 0 else {
            throw LocalPostgresError.commandFailed(command: tool, status: outcome.status, output: outcome.stderr + outcome.stdout)
        }
        return outcome.stdout
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
    case commandFailed(command: String, status: Int32, output: String)

    public var description: String {
        switch self {
        case .binariesNotFound:
            "PostgreSQL server binaries not found (looked in TESSERA_PG_BIN, /usr/lib/postgresql/*/bin and PATH); "
                + "run scripts/ensure-postgres or `apt-get install postgresql`"
        case .commandFailed(let command, let status, let output):
            "\(command) failed with status \(status): \(output.split(separator: "\n").suffix(3).joined(separator: " | "))"
        }
    }
}

extension LocalPostgres {
    /// Starts a detached watcher that stops this cluster (and deletes its folder when asked) once
    /// process `pid` is gone, even after a crash or `kill -9`: test and benchmark clusters never
    /// outlive the run that made them.
    public func stopWhenProcessExits(_ pid: Int32 = getpid(), removeData: Bool) throws {
        let pgCtl = (getuid() == 0 ? "/usr/sbin/runuser -u postgres -- " : "") + "'\(binDirectory)/pg_ctl'"
        let script = """
            while kill -0 \(pid) 2>/dev/null; do sleep 0.5; done
            \(pgCtl) -D '\(dataDirectory)' -m immediate -w stop >/dev/null 2>&1
            \(removeData ? "rm -rf '\(dataDirectory)'" : "")
            """
        try Subprocess.detach("/bin/sh", ["-c", script])
    }
}
