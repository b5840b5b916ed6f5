import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import TesseraPostgres

/// `--database-url`, defaulting to `DATABASE_URL`.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (default: $DATABASE_URL).")
    var databaseURL: String?

    func resolvedURL() throws -> DatabaseURL {
        guard let raw = databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"], !raw.isEmpty else {
            throw CLIError(message: "DATABASE_URL is not set (or pass --database-url postgres://user@host:5432/db)")
        }
        do {
            return try DatabaseURL(raw)
        } catch {
            throw CLIError(message: error.description)
        }
    }
}

/// Runs `body` with a running `PostgresClient`, after checking within 10 s that the database
/// answers: an unreachable database is a clear one-line error, never a hang.
func withDatabase<Result: Sendable>(
    _ url: DatabaseURL, logger: Logger, _ body: @escaping @Sendable (PostgresClient) async throws -> Result
) async throws -> Result {
    do {
        let configuration = try url.connectionConfiguration()
        let connection = try await withTimeout(.seconds(10)) {
            try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        }
        try await connection.close()
    } catch is TimeoutError {
        throw CLIError(message: "cannot reach the database at \(url): no answer within 10 s")
    } catch {
        throw CLIError(message: "cannot reach the database at \(url): \(describeDatabaseError(error) ?? "\(error)")")
    }
    // Quiet background logger: this short-lived client may be asked for a connection a moment
    // before its run loop starts, which PostgresNIO reports as a (harmless) warning.
    var backgroundLogger = logger
    backgroundLogger.logLevel = .error
    let client = PostgresClient(configuration: try url.clientConfiguration(), backgroundLogger: backgroundLogger)
    return try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask {
            await client.run()
            return nil
        }
        defer { group.cancelAll() }
        return try await body(client)
    }
}
