import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs a program to completion with `posix_spawn` and a blocking `waitpid`, its output captured in
/// temporary files. Foundation's `Process.waitUntilExit()` was seen to hang on Linux when the child
/// leaves a daemon behind (`pg_ctl start`); this has no run loop and no pipe to keep open.
public enum Subprocess {
    public struct Outcome: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil)
        throws -> Outcome
    {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-spawn-\(UUID().uuidString)")
            .path
        let outPath = base + ".out"
        let errPath = base + ".err"
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        let pid = try spawn(executable, arguments, environment: environment, stdout: outPath, stderr: errPath)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw SubprocessError.waitFailed(executable, errno) }
        }
        let exitCode = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return Outcome(
            status: exitCode,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        )
    }

    /// A child left running (a server in a test): output to `log`, stopped with ``stop()``.
    public final class Running: Sendable {
        public let pid: pid_t
        public let log: String

        init(pid: pid_t, log: String) {
            self.pid = pid
            self.log = log
        }

        /// SIGTERM, then waits; SIGKILL after 10 s.
        public func stop() {
            kill(pid, SIGTERM)
            var status: Int32 = 0
            for _ in 0..<1000 {
                if waitpid(pid, &status, WNOHANG) == pid { return }
                usleep(10_000)
            }
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }

        public var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    public static func start(_ executable: String, _ arguments: [String], environment: [String: String]?) throws
        -> Running
    {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tessera-child-\(UUID().uuidString).log"
        ).path
        let pid = try spawn(executable, arguments, environment: environment, stdout: log, stderr: log + ".err")
        return Running(pid: pid, log: log)
    }

    /// Starts a program in a session of its own (no terminal signals), output discarded, not waited for.
    public static func detach(_ executable: String, _ arguments: [String]) throws {
        _ = try spawn(
            "/usr/bin/setsid", [executable] + arguments, environment: nil, stdout: "/dev/null", stderr: "/dev/null")
    }

    private static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String]?, stdout: String, stderr: String
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let environmentStrings = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = environmentStrings.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else { throw SubprocessError.spawnFailed(executable, result) }
        return pid
    }
}

public enum SubprocessError: Error, CustomStringConvertible {
    case spawnFailed(String, Int32)
    case waitFailed(String, Int32)

    public var description: String {
        switch self {
        case .spawnFailed(let executable, let code): "cannot start \(executable): \(String(cString: strerror(code)))"
        case .waitFailed(let executable, let code): "cannot wait for \(executable): \(String(cString: strerror(code)))"
        }
    }
}

/// Runs blocking work (a child process and its `waitpid`) on NIO's thread pool for blocking I/O,
/// so it does not hold one of the few threads Swift concurrency runs every task on: a test suite
/// creating a database per test with psql starved the other tests' timers and queries.
public func offloaded<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive(work)
}
