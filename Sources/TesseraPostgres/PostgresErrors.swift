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
