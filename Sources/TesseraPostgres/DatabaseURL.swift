import Foundation
import NIOSSL
import PostgresNIO

/// Parses `DATABASE_URL` (`postgres://user:password@host:port/database?sslmode=...`) into a
/// PostgresNIO configuration. `sslmode` is `disable`, `prefer` (default, as libpq) or
/// `require`/`verify-full` (TLS with certificate verification). `?host=/path/to/socket/dir`
/// connects through a unix socket. Errors never include the password.
public struct DatabaseURL: Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int
    public let username: String
    public let password: String?
    public let database: String
    public let sslMode: String
    public let socketDirectory: String?

    public init(_ string: String) throws(DatabaseURLError) {
        guard let components = URLComponents(string: string),
            let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme)
        else { throw .notAPostgresURL }
        let query = Dictionary(
            (components.queryItems ?? []).map { ($0.name, $0.value ?? "") },
            uniquingKeysWith: { _, last in last }
        )
        self.socketDirectory = query["host"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        guard let host = components.host.flatMap({ $0.isEmpty ? nil : $0 }) ?? socketDirectory.map({ _ in "localhost" })
        else {
            throw .missingHost
        }
        self.host = host
        self.port = components.port ?? 5432
        guard let user = components.user.flatMap({ $0.isEmpty ? nil : $0 }) else { throw .missingUser }
        self.username = user.removingPercentEncoding ?? user
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !path.isEmpty else { throw .missingDatabase }
        self.database = path.removingPercentEncoding ?? path
        self.sslMode = query["sslmode"] ?? "prefer"
        guard ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(sslMode) else {
            throw .unsupportedSSLMode(sslMode)
        }
    }

    public func clientConfiguration() throws -> PostgresClient.Configuration {
        if let socketDirectory {
            return .init(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password,
                database: database)
        }
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "allow", "prefer": tls = .prefer(.makeClientConfiguration())
        default: tls = .require(.makeClientConfiguration())
        }
        return .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
    }

    /// The same settings for a single connection (used to fail fast when the database is unreachable).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        if let socketDirectory {
            return .init(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password,
                database: database)
        }
        let tls: PostgresConnection.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "allow", "prefer": tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        default: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        return .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
    }

    /// `postgres://user@host:port/database` — the password is never shown.
    public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }
}

public enum DatabaseURLError: Error, CustomStringConvertible, Equatable {
    case notAPostgresURL
    case missingHost
    case missingUser
    case missingDatabase
    case unsupportedSSLMode(String)

    public var description: String {
        switch self {
        case .notAPostgresURL: "DATABASE_URL must look like postgres://user[:password]@host[:port]/database"
        case .missingHost: "DATABASE_URL has no host"
        case .missingUser: "DATABASE_URL has no user name"
        case .missingDatabase: "DATABASE_URL has no database name"
        case .unsupportedSSLMode(let mode):
            "DATABASE_URL sslmode=\(mode) is not supported (disable, prefer, require, verify-full)"
        }
    }
}
