import ArgumentParser
import Foundation
import TesseraAPI
import TesseraCore

/// `tessera scan [PATH…]`: finds leaked Tessera tokens in files, folders or stdin (issue 16, leak
/// response) and, with `--report`, hands them to a Tessera server's `/credentials/revoke`.
///
/// One line per finding, `path:line:column: tsp_1234abcd… (personal token)`, never a whole token.
/// Exit status: 0 nothing found, 1 tokens found, 2 a usage or I/O error (the scan goes on past an
/// unreadable file, and still reports what it found).
struct ScanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Find leaked Tessera tokens in files; optionally report them for revocation.",
        discussion: """
            Folders are walked recursively, skipping .git, .build, node_modules, links to folders, \
            files over 10 MiB and binary files (a NUL byte in the first 8 KiB). A finding is tsp_ or \
            tso_ and 128 lowercase hex characters standing alone, with a valid checksum; it is printed \
            redacted.

            Exit status: 0 nothing found, 1 tokens found, 2 a usage or I/O error.
            """
    )

    static let maxFileSize = 10 << 20
    static let reportChunkSize = 1_000
    static let revokePath = "/credentials/revoke"

    @Argument(help: "Files or folders to scan; - reads stdin (default: the current folder).")
    var paths: [String] = []

    @Option(
        help: ArgumentHelp(
            "POST the tokens found to this Tessera server's /credentials/revoke (a base URL gets the path appended).",
            valueName: "url"))
    var report: String?

    @Flag(name: .shortAndLong, help: "Print no findings and no summary: only the exit status tells.")
    var quiet = false

    func run() async throws {
        let server = try report.map(Self.revokeClient)  // a bad URL is a usage error before any work
        var scan = Scan(quiet: quiet)
        for path in paths.isEmpty ? ["."] : paths {
            if path == "-" { scan.readStandardInput() } else { scan.visit(path, top: true) }
        }
        if let server, !scan.secrets.isEmpty { try await send(scan.secrets, to: server) }
        if scan.failed { throw ExitCode(2) }
        if !scan.secrets.isEmpty { throw ExitCode(1) }
    }

    /// A client for the server of `url`, whose path may or may not end in `/credentials/revoke`.
    static func revokeClient(_ url: String) throws -> APIClient {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        if base.hasSuffix(revokePath) { base.removeLast(revokePath.count) }
        return try APIClient(endpoint: base, apiKey: "", org: nil)
    }

    func send(_ secrets: [TokenSecret], to server: APIClient) async throws {
        let host = server.endpoint.host.map { host in server.endpoint.port.map { "\(host):\($0)" } ?? host } ?? ""
        for start in stride(from: 0, to: secrets.count, by: Self.reportChunkSize) {
            let chunk = secrets[start..<min(start + Self.reportChunkSize, secrets.count)].map(\.plaintext)
            do {
                try await server.send("POST", Self.revokePath, body: CredentialsReport(credentials: chunk))
            } catch var error as CLIError {
                error.message = "reporting to \(host) failed: \(error.message)"
                error.exitCode = 2
                throw error
            }
        }
        if !quiet { FileHandle.standardError.write(Data("reported \(secrets.count) token(s) to \(host)\n".utf8)) }
    }
}

/// What one run has seen: the findings (printed as they come), the distinct tokens, and whether
/// anything could not be read.
private struct Scan {
    let quiet: Bool
    private(set) var secrets: [TokenSecret] = []
    private(set) var failed = false
    private var seen: Set<String> = []

    init(quiet: Bool) { self.quiet = quiet }

    /// A folder is walked in name order. On the command line a link is followed and any name is
    /// scanned; inside a folder, links to folders and the ignored folders are skipped.
    mutating func visit(_ path: String, top: Bool) {
        var info = stat()
        guard (top ? stat(path, &info) : lstat(path, &info)) == 0 else { return fail(path, errno) }
        if !top, info.st_mode & S_IFMT == S_IFLNK {
            // A link to a file is scanned; one to a folder, or to nothing, is not.
            guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return }
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            scanFile(path, size: Int(info.st_size))
        case S_IFDIR:
            guard let directory = opendir(path) else { return fail(path, errno) }  // errno says why
            closedir(directory)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return fail(path, EIO) }
            for name in names.sorted() where !Self.isIgnored(name) {
                visit(path == "." ? name : (path.hasSuffix("/") ? path + name : path + "/" + name), top: false)
            }
        default:
            return  // sockets, FIFOs, devices
        }
    }

    /// `.git`, `node_modules`, and SwiftPM's `.build` and `.build-…`/`.build.…` scratch folders
    /// (but not `.buildkite`, where CI secrets live).
    static func isIgnored(_ name: String) -> Bool {
        if name == ".git" || name == "node_modules" { return true }
        guard name.hasPrefix(".build") else { return false }
        return name.dropFirst(6).first.map { !$0.isLetter } ?? true
    }

    mutating func scanFile(_ path: String, size: Int) {
        guard size <= ScanCommand.maxFileSize else { return }
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return fail(path, errno) }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        do {
            let start = try handle.read(upToCount: 8192) ?? Data()
            guard !start.contains(0) else { return }  // binary: the rest is not read
            record(TokenScanner.scan([UInt8](start + (try handle.readToEnd() ?? Data()))), in: path)
        } catch {
            fail(path, EIO)
        }
    }

    /// Reads stdin in 1 MiB pieces, each scanned up to its last newline, so `git log -p | tessera
    /// scan -` needs no more memory than its longest line.
    mutating func readStandardInput() {
        var pending: [UInt8] = []
        var linesBefore = 0
        do {
            while let piece = try FileHandle.standardInput.read(upToCount: 1 << 20), !piece.isEmpty {
                pending += piece
                guard let lastNewline = pending.lastIndex(of: UInt8(ascii: "\n")) else { continue }
                let lines = Array(pending[...lastNewline])
                pending.removeFirst(lines.count)
                record(TokenScanner.scan(lines), in: "<stdin>", linesBefore: linesBefore)
                linesBefore += lines.count { $0 == UInt8(ascii: "\n") }
            }
        } catch {
            fail("<stdin>", EIO)
        }
        record(TokenScanner.scan(pending), in: "<stdin>", linesBefore: linesBefore)
    }

    mutating func record(_ matches: [TokenScanner.Match], in path: String, linesBefore: Int = 0) {
        for match in matches {
            if !quiet {
                let place = "\(path):\(linesBefore + match.line):\(match.column)"
                print("\(place): \(match.secret.displayPrefix)… (\(match.secret.kind.rawValue) token)")
            }
            if seen.insert(match.secret.plaintext).inserted { secrets.append(match.secret) }
        }
    }

    /// Errors go to stderr even with `--quiet`: a scan that could not read everything must say so.
    mutating func fail(_ path: String, _ code: Int32) {
        failed = true
        FileHandle.standardError.write(
            Data("tessera: error: cannot read \(path): \(String(cString: strerror(code)))\n".utf8))
    }
}
