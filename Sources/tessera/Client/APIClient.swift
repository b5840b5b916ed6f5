import ArgumentParser
import Foundation
import TesseraAPI

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Where the client commands send requests, and with which credential: `--endpoint`/`--org`,
/// then `TESSERA_ENDPOINT`, `TESSERA_API_KEY`, `TESSERA_ORG`, then the file `tessera login`
/// wrote (`$TESSERA_CONFIG`, default `~/.config/tessera/config.json`, mode 0600).
struct ClientOptions: ParsableArguments {
    @Option(help: "Tessera URL (default: $TESSERA_ENDPOINT, then the login file).")
    var endpoint: String?

    @Option(help: "Organization slug to act in (default: $TESSERA_ORG, then the login file; tokens act in their own).")
    var org: String?

    @Option(name: [.short, .customLong("output")], help: "Output: table, json or yaml.")
    var output: OutputFormat = .table

    var printer: Printer { Printer(format: output) }

    func client() throws -> APIClient {
        let environment = ProcessInfo.processInfo.environment
        let saved = try ClientConfigFile.load()
        guard let endpoint = endpoint ?? environment["TESSERA_ENDPOINT"].nonEmpty ?? saved?.endpoint else {
            throw CLIError(message: "no server: run `tessera login`, or set TESSERA_ENDPOINT", exitCode: 2)
        }
        guard let key = environment["TESSERA_API_KEY"].nonEmpty ?? saved?.apiKey else {
            throw CLIError(message: "no credential: run `tessera login`, or set TESSERA_API_KEY", exitCode: 2)
        }
        return try APIClient(
            endpoint: endpoint, apiKey: key, org: org ?? environment["TESSERA_ORG"].nonEmpty ?? saved?.org)
    }
}

extension Optional where Wrapped == String {
    var nonEmpty: String? { self?.isEmpty == false ? self : nil }
}

/// What `tessera login` saves.
struct ClientConfigFile: Codable {
    var endpoint: String
    var apiKey: String
    var org: String?

    static var path: String {
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["TESSERA_CONFIG"].nonEmpty { return explicit }
        // XDG first, then $HOME (Foundation's NSHomeDirectory() reads the password database as root).
        let base =
            environment["XDG_CONFIG_HOME"].nonEmpty
            ?? ((environment["HOME"].nonEmpty ?? NSHomeDirectory()) + "/.config")
        return base + "/tessera/config.json"
    }

    static func load() throws -> ClientConfigFile? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(ClientConfigFile.self, from: data)
        } catch {
            throw CLIError(message: "\(path) is not a Tessera login file; run `tessera login` again")
        }
    }

    /// Writes the file readable by its owner only (0600), in a 0700 folder.
    func save() throws {
        let path = Self.path
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(
            atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(self)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else {
            throw CLIError(message: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        fchmod(descriptor, 0o600)
        let written = data.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        guard written == data.count else { throw CLIError(message: "cannot write \(path)") }
    }
}

/// A JSON client for the Tessera API. Errors become one line and exit 1: the server's problem
/// detail, or why the server could not be reached.
struct APIClient {
    let endpoint: URL
    let apiKey: String
    let org: String?

    init(endpoint: String, apiKey: String, org: String?) throws {
        let trimmed = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        guard let url = URL(string: trimmed), let scheme = url.scheme, ["http", "https"].contains(scheme),
            url.host != nil
        else {
            throw CLIError(message: "endpoint \(endpoint) is not an http(s) URL", exitCode: 2)
        }
        self.endpoint = url
        self.apiKey = apiKey
        self.org = org
    }

    /// `/api-tokens…` in the chosen org (`/orgs/{org}/api-tokens…`), or the token's own.
    func tokens(_ suffix: String = "") -> String {
        (org.map { "/orgs/\(escape($0))" } ?? "") + "/api-tokens" + suffix
    }

    func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(
            withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? segment
    }

    /// Sends `body` (JSON) and decodes the answer as `Response`. A non-2xx answer becomes one
    /// line: the problem's detail and its fields.
    func send<Response: Decodable>(
        _ method: String, _ path: String, query: [(String, String?)] = [], body: (any Encodable)? = nil,
        as type: Response.Type
    ) async throws -> Response {
        let data = try await exchange(method, path, query: query, body: body)
        do {
            return try JSONDecoder().decode(Response.self, from: data)
        } catch {
            throw CLIError(
                message: "the server's answer to \(method) \(path) is not what this client expects: \(error)")
        }
    }

    /// Sends `body` (JSON) and ignores what a successful answer holds.
    func send(_ method: String, _ path: String, query: [(String, String?)] = [], body: (any Encodable)? = nil)
        async throws
    {
        _ = try await exchange(method, path, query: query, body: body)
    }

    /// POSTs `fields` form-encoded (the OAuth endpoints) and decodes the answer as `Response`.
    func postForm<Response: Decodable>(_ path: String, _ fields: [(String, String)], as type: Response.Type)
        async throws -> Response
    {
        var components = URLComponents()
        components.queryItems = fields.map { URLQueryItem(name: $0.0, value: $0.1) }
        // URLComponents leaves `+` alone, which a form decoder reads as a space.
        let encoded = (components.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
        let data = try await exchange(
            "POST", path, query: [], body: nil, raw: (Data(encoded.utf8), "application/x-www-form-urlencoded"))
        do {
            return try JSONDecoder().decode(Response.self, from: data)
        } catch {
            throw CLIError(message: "the server's answer to POST \(path) is not what this client expects: \(error)")
        }
    }

    private func exchange(
        _ method: String, _ path: String, query: [(String, String?)], body: (any Encodable)?,
        raw: (Data, String)? = nil
    ) async throws -> Data {
        var components = URLComponents(url: endpoint, resolvingAgainstBaseURL: false)!
        components.percentEncodedPath = endpoint.path + path
        let items = query.compactMap { name, value in value.map { URLQueryItem(name: name, value: $0) } }
        if !items.isEmpty { components.queryItems = items }
        var request = URLRequest(url: components.url!)
        request.httpMethod = method
        request.timeoutInterval = 30
        if !apiKey.isEmpty { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let org { request.setValue(org, forHTTPHeaderField: "X-Tessera-Org") }
        if let body {
            request.httpBody = try JSONEncoder().encode(body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let (data, type) = raw {
            request.httpBody = data
            request.setValue(type, forHTTPHeaderField: "Content-Type")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch let error as URLError {
            throw CLIError(message: "cannot reach Tessera at \(endpoint.absoluteString): \(Self.describe(error))")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            if let oauth = try? JSONDecoder().decode(OAuthErrorBody.self, from: data) {
                throw CLIError(message: "\(status) \(oauth.error): \(oauth.errorDescription ?? "refused")")
            }
            let problem = try? JSONDecoder().decode(ProblemBody.self, from: data)
            let detail = problem?.detail ?? HTTPURLResponse.localizedString(forStatusCode: status)
            let fields = (problem?.errors ?? []).map { "\($0.field): \($0.message)" }
            throw CLIError(
                message: "\(status) \(detail)" + (fields.isEmpty ? "" : " (\(fields.joined(separator: "; ")))"))
        }
        return data
    }

    /// GETs a keyset-paginated list: one page, or every page with `all`. Returns the items and
    /// the cursor of the next page (nil on the last).
    func pages<Page: KeysetPage>(_ path: String, _ type: Page.Type, all: Bool, query: [(String, String?)])
        async throws -> (items: [Page.Item], next: String?)
    {
        var items: [Page.Item] = []
        var cursor: String?
        repeat {
            let page = try await send("GET", path, query: query + [("cursor", cursor)], as: Page.self)
            items += page.items
            cursor = page.nextCursor
        } while all && cursor != nil
        return (items, cursor)
    }

    private static func describe(_ error: URLError) -> String {
        switch error.code {
        case .cannotConnectToHost: "connection refused (is the server running?)"
        case .timedOut: "no answer within 30 s"
        case .cannotFindHost, .dnsLookupFailed: "unknown host"
        case .networkConnectionLost: "the connection was lost"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate: "TLS failed"
        default: error.localizedDescription
        }
    }
}

/// A page of a keyset-paginated list (`nextCursor` absent on the last page).
protocol KeysetPage: Decodable {
    associatedtype Item: Codable
    var items: [Item] { get }
    var nextCursor: String? { get }
}

extension TokenList: KeysetPage {
    var items: [TokenInfo] { tokens }
}

extension AuditPage: KeysetPage {
    var items: [AuditEventInfo] { events }
}
