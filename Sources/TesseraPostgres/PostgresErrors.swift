import PostgresNIO

extension PSQLError {
    /// SQLSTATE of a server error, e.g. `23505` for a unique violation.
    public var sqlState: String? { serverInfo?[.sqlState] }
    /// Name of the violated constraint (or index) when the server reports one.
    public var constraintName: String? { serverInfo?[.constraintName] }

    public var isUniqueViolation: Bool { sqlState == "23505" }
    public var isCheckViolation: Bool { sqlState == "23514" }
    public var isForeignKeyViolation: Bool { sqlState == "23503" }
}

extension Error {
    /// The server error behind `self`, if it is one.
    public var postgresError: PSQLError? { self as? PSQLError }
}

/// A readable one-line reason for a PostgresNIO error, without query text or parameters (the
/// server's message, else the connection-level cause, else the code), or nil for other errors.
/// PostgresNIO redacts its own descriptions on purpose.
public func describeDatabaseError(_ error: any Error) -> String? {
    if let wrapped = error as? PostgresTransactionError {
        return (wrapped.closureError ?? wrapped.beginError ?? wrapped.commitError).flatMap(describeDatabaseError)
    }
    guard let error = error as? PSQLError else { return nil }
    if let message = error.serverInfo?[.message] {
        return message
    }
    if let underlying = error.underlying {
        return "\(underlying)"
    }
    return "\(error.code)"
}

/// A short, secret-free description of a database failure for logs and problems.
public func describeDatabaseFailure(_ error: any Error) -> String {
    if let timeout = error as? TimeoutError { return "no answer within \(timeout.duration)" }
    if let error = error as? PSQLError, ["42P05", "26000"].contains(error.serverInfo?[.sqlState] ?? "") {
        return "a named prepared statement was lost or duplicated (behind PgBouncer < 1.21 in transaction pooling? "
            + "set TESSERA_DB_STATEMENTS=unnamed)"
    }
    return describeDatabaseError(error) ?? String(describing: type(of: error))
}

/// True for errors that mean "the database is not there right now" (as opposed to a bad query
/// or a constraint): the HTTP layer answers those with 503 and Retry-After.
public func isDatabaseUnavailable(_ error: any Error) -> Bool {
    if error is TimeoutError || error is ConnectionClosedError { return true }
    if let error = error as? PostgresTransactionError {
        return [error.closureError, error.beginError, error.commitError, error.rollbackError]
            .contains { $0.map(isDatabaseUnavailable) ?? false }
    }
    guard let error = error as? PSQLError else { return false }
    switch error.code {
    case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
        return true
    case .server:
        // Class 08 (connection exception), 57P01-57P03 (shutdown, cannot connect now), and a
        // named prepared statement a transaction-pooling PgBouncer lost or duplicated (42P05,
        // 26000: a setup problem, TESSERA_DB_STATEMENTS=unnamed, not a bad request).
        let state = error.serverInfo?[.sqlState] ?? ""
        return state.hasPrefix("08") || state.hasPrefix("57P") || state == "42P05" || state == "26000"
    default:
        return false
    }
}
