import Logging
import PostgresNIO

/// How statements are sent: `prepared` (named prepared statements, once per connection: the
/// fastest) or `unnamed` (parse, bind and execute each time: what a transaction-pooling PgBouncer
/// before 1.21 can carry, since it may hand the next statement to another server connection).
public enum StatementMode: String, Sendable, CaseIterable {
    case prepared
    case unnamed
}

extension PostgresClient {
    /// The rows of `statement`, as a named prepared statement or as an unnamed one.
    public func rows<Statement: PostgresPreparedStatement>(
        _ statement: Statement, mode: StatementMode, logger: Logger
    ) async throws -> [Statement.Row] {
        var rows: [Statement.Row] = []
        switch mode {
        case .prepared:
            for try await row in try await execute(statement, logger: logger) { rows.append(row) }
        case .unnamed:
            for try await row in try await self.query(try statement.unnamed(), logger: logger) {
                rows.append(try statement.decodeRow(row))
            }
        }
        return rows
    }
}

extension PostgresPreparedStatement {
    /// The statement as an unnamed one: parsed, bound and executed in one go.
    public func unnamed() throws -> PostgresQuery {
        PostgresQuery(unsafeSQL: Self.sql, binds: try makeBindings())
    }
}

/// A statement whose SQL text is the same whatever its values (every value bound, no optional
/// fragments), so it can be a named prepared statement built from an ordinary interpolated
/// ``PostgresQuery``: parsed and planned once per connection instead of on every call (issue #24:
/// planning was the largest share of PostgreSQL's time per token creation). Parameter types
/// come from the first call on each connection; a NULL there takes the type its context gives
/// (an INSERT's column, a cast), which is why such values must never sit under a cast to a type
/// other than what they are bound as.
public protocol FixedStatement: PostgresPreparedStatement {
    var query: PostgresQuery { get }
}

extension FixedStatement {
    public func makeBindings() throws -> PostgresBindings { query.binds }
}

extension PostgresConnection {
    /// The rows of `statement` as a named prepared statement or, for a transaction-pooling
    /// PgBouncer (`unnamed`), as an unnamed one; like ``statement(_:logger:)``, refuses a
    /// connection that has closed.
    public func rows<Statement: FixedStatement>(
        _ statement: Statement, mode: StatementMode, logger: Logger
    ) async throws -> [Statement.Row] {
        guard !isClosed else { throw ConnectionClosedError() }
        var rows: [Statement.Row] = []
        switch mode {
        case .prepared:
            for try await row in try await execute(statement, logger: logger) { rows.append(row) }
        case .unnamed:
            for try await row in try await query(statement.query, logger: logger) {
                rows.append(try statement.decodeRow(row))
            }
        }
        return rows
    }
}
