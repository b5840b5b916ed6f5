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
            let query = PostgresQuery(unsafeSQL: Statement.sql, binds: try statement.makeBindings())
            for try await row in try await self.query(query, logger: logger) {
                rows.append(try statement.decodeRow(row))
            }
        }
        return rows
    }
}
