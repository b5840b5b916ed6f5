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
