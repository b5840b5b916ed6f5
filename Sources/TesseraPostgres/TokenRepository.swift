import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

/// Token reads and writes. Every write runs in the caller's transaction together with its audit
/// event, so a token never exists without its trail.
/// What `GET /api-tokens` asks for: filters, direction, page size and where the page starts.
public struct TokenQuery: Sendable {
    /// A position in (created_at, id) order; opaque to clients as a cursor.
    public struct Position: Sendable, Equatable {
        public var micros: Int64
        public var id: UUID
        public init(micros: Int64, id: UUID) {
            self.micros = micros
            self.id = id
        }
    }

    public var limit: Int
    public var after: Position?
    public var search: String?
    public var kind: TokenKind?
    public var status: TokenStatus?
    public var ascending: Bool
    /// Leave out revoked tokens (the BentoCloud list: a deleted token is gone).
    public var liveOnly = false
    /// Which tokens by origin; nil for all. Exchanged (federation) tokens are many and short-lived,
    /// so lists show direct ones unless asked.
    public var source: TokenSource? = .direct

    public init(
        limit: Int = 100, after: Position? = nil, search: String? = nil, kind: TokenKind? = nil,
        status: TokenStatus? = nil, ascending: Bool = false
    ) {
        self.limit = limit
        self.after = after
        self.search = search
        self.kind = kind
        self.status = status
        self.ascending = ascending
    }
}

public struct TokenPage: Sendable {
    public var records: [TokenRecord]
    /// Where the next page starts; nil on the last page.
    public var next: TokenQuery.Position?
}

public enum RotationOutcome: Sendable {
    /// The new token (its id) that replaces the old one.
    case rotated(UUID)
    /// The old token had already been rotated away: its whole family is now revoked.
    case reuseDetected
    case notFound
}

/// Tokens (`tokens`): pages and counts of an org's tokens, one token, inserts, metadata
/// changes, rotation, revocations.
public struct TokenRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    static let tokenColumns = """
        t.id, t.org_id, o.slug, t.kind, t.owner_user_id, t.username, t.name, t.description, t.scopes, t.groups,
        t.token_prefix, t.expires_at, t.status, t.revoked_at, t.revoked_reason, t.created_at, t.updated_at,
        t.created_by, t.last_used_at, t.trust_policy_id, t.federated_issuer, t.federated_subject, t.federated_jti,
        t.access_rules, t.allowed_cidrs::text[]
        """

    /// One page of the tokens of `orgID` visible to a caller: all of them (`all`), or the
    /// caller's personal tokens plus the organization tokens. Keyset-paginated on
    /// (created_at, id), which the `tokens_org_created_idx` index serves in either direction.
    /// A `LIKE` pattern matching `text` anywhere, its own `\\`, `%` and `_` taken literally.
    static func containsPattern(_ text: String) -> String {
        "%"
            + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_") + "%"
    }

    public func list(orgID: UUID, visibleTo ownerUserID: UUID?, all: Bool, query page: TokenQuery)
        async throws -> TokenPage
    {
        let rows = try await connection.statement(
            """
            SELECT \(unescaped: Self.tokenColumns), (extract(epoch FROM t.created_at) * 1000000)::bigint
            FROM tokens t JOIN organizations o ON o.id = t.org_id
            WHERE \(filter: TokenFilter(orgID: orgID, visibleTo: ownerUserID, all: all, query: page))
              AND (\(page.after?.micros)::bigint IS NULL OR
                   (t.created_at, t.id) \(unescaped: page.ascending ? ">" : "<")
                   (timestamptz 'epoch' + \(page.after?.micros) * interval '1 microsecond', \(page.after?.id)))
            ORDER BY t.created_at \(unescaped: page.ascending ? "ASC" : "DESC"), t.id \(unescaped: page.ascending ? "ASC" : "DESC")
            LIMIT \(page.limit + 1)
            """,
            logger: logger
        )
        var records: [TokenRecord] = []
        var positions: [TokenQuery.Position] = []
        for try await row in rows {
            records.append(try Self.tokenRecord(row))
            positions.append(.init(micros: try row.makeRandomAccess()[25].decode(Int64.self), id: records.last!.id))
        }
        guard records.count > page.limit else { return TokenPage(records: records, next: nil) }
        return TokenPage(records: Array(records.prefix(page.limit)), next: positions[page.limit - 1])
    }

    /// How many tokens ``tokens(orgID:visibleTo:all:query:logger:)`` would list over all pages.
    public func count(
        orgID: UUID, visibleTo ownerUserID: UUID?, all: Bool, query page: TokenQuery
    )
        async throws -> Int
    {
        let rows = try await connection.statement(
            """
            SELECT count(*)::bigint FROM tokens t
            WHERE \(filter: TokenFilter(orgID: orgID, visibleTo: ownerUserID, all: all, query: page))
            """,
            logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    public func find(id: UUID, orgID: UUID) async throws -> TokenRecord? {
        let rows = try await connection.statement(
            """
            SELECT \(unescaped: Self.tokenColumns)
            FROM tokens t JOIN organizations o ON o.id = t.org_id
            WHERE t.id = \(id) AND t.org_id = \(orgID)
            """,
            logger: logger
        )
        for try await row in rows { return try Self.tokenRecord(row) }
        return nil
    }

    /// Deletes a token of `orgID`; false when there was none.
    public func delete(id: UUID, orgID: UUID) async throws -> Bool {
        let rows = try await connection.statement(
            "DELETE FROM tokens WHERE id = \(id) AND org_id = \(orgID) RETURNING id", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Revokes the live personal tokens of `userID` (in `orgID`, or everywhere when nil) with
    /// `reason`; returns the ids, for audit events and cache invalidation.
    public func revokePersonal(userID: UUID, orgID: UUID?, reason: String) async throws
        -> [(id: UUID, orgID: UUID)]
    {
        let rows = try await connection.statement(
            """
            UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = \(reason), updated_at = now()
            WHERE owner_user_id = \(userID) AND kind = 'personal' AND status <> 'revoked'
              AND (\(orgID)::uuid IS NULL OR org_id = \(orgID))
            RETURNING id, org_id
            """,
            logger: logger
        )
        var revoked: [(id: UUID, orgID: UUID)] = []
        for try await (id, org) in rows.decode((UUID, UUID).self) { revoked.append((id, org)) }
        return revoked
    }

    static func tokenRecord(_ row: PostgresRow) throws -> TokenRecord {
        let cells = row.makeRandomAccess()
        var record = TokenRecord(
            id: try cells[0].decode(UUID.self),
            orgID: try cells[1].decode(UUID.self),
            orgSlug: try cells[2].decode(String.self),
            kind: TokenKind(rawValue: try cells[3].decode(String.self)) ?? .personal,
            ownerUserID: try cells[4].decode(UUID?.self),
            username: try cells[5].decode(String.self),
            name: try cells[6].decode(String.self),
            description: try cells[7].decode(String?.self),
            scopes: try cells[8].decode([String].self),
            groups: try cells[9].decode([String].self),
            tokenPrefix: try cells[10].decode(String.self),
            expiresAt: try cells[11].decode(Date?.self),
            status: TokenStatus(rawValue: try cells[12].decode(String.self)) ?? .revoked,
            revokedAt: try cells[13].decode(Date?.self),
            revokedReason: try cells[14].decode(String?.self),
            createdAt: try cells[15].decode(Date.self),
            updatedAt: try cells[16].decode(Date.self),
            createdBy: try cells[17].decode(String.self),
            lastUsedAt: try cells[18].decode(Date?.self),
            federation: try cells[19].decode(UUID?.self).map { policy in
                FederatedOrigin(
                    trustPolicyID: policy, issuer: try cells[20].decode(String?.self) ?? "",
                    subject: try cells[21].decode(String?.self) ?? "", jti: try cells[22].decode(String?.self) ?? "")
            }
        )
        record.accessRules = try cells[23].decode([String].self).compactMap(AccessRule.init(text:))
        record.allowedCidrs = try cells[24].decode([String].self).compactMap { try? AddressRange($0) }
        return record
    }

    /// Applies a metadata change in one statement; nil fields stay, `description: .some(nil)`
    /// clears. Returns false when the token is not in `orgID`. The schema refuses to bring a
    /// revoked token back (trigger `tokens_scopes_immutable`).
    public func update(
        id: UUID, orgID: UUID, name: String?, description: String??, status: TokenStatus?
    ) async throws -> Bool {
        let rows = try await connection.statement(
            """
            UPDATE tokens SET
                name = coalesce(\(name), name),
                description = CASE WHEN \(description != nil) THEN \(description ?? nil) ELSE description END,
                status = coalesce(\(status?.rawValue), status),
                updated_at = now()
            WHERE id = \(id) AND org_id = \(orgID)
            RETURNING id
            """,
            logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Rotates token `id` of `orgID` inside the caller's transaction: a new row with the same
    /// metadata, family and a new secret; the old row revoked (`rotated`), verifying until
    /// `graceUntil` when an overlap was asked for. Rotating a row that was already rotated away
    /// revokes every live token of its family (reuse detection) instead.
    public func rotate(
        id: UUID, orgID: UUID, secret: TokenSecret, now: Date, graceUntil: Date?
    ) async throws -> RotationOutcome {
        let rows = try await connection.statement(
            """
            SELECT status, revoked_reason, coalesce(family_id, id) FROM tokens
            WHERE id = \(id) AND org_id = \(orgID) FOR UPDATE
            """,
            logger: logger)
        var found: (String, String?, UUID)?
        for try await row in rows.decode((String, String?, UUID).self) { found = row }
        guard let (status, reason, family) = found else { return .notFound }
        if status == "revoked" {
            guard reason == "rotated" else { return .notFound }
            try await connection.statement(
                """
                UPDATE tokens SET status = 'revoked', revoked_at = \(now), revoked_reason = 'rotation_reuse',
                                  grace_until = NULL, updated_at = \(now)
                WHERE org_id = \(orgID) AND coalesce(family_id, id) = \(family)
                  AND (status <> 'revoked' OR grace_until IS NOT NULL)
                """,
                logger: logger)
            return .reuseDetected
        }
        try await connection.statement(
            """
            UPDATE tokens SET status = 'revoked', revoked_at = \(now), revoked_reason = 'rotated',
                              grace_until = \(graceUntil), family_id = \(family), updated_at = \(now)
            WHERE id = \(id)
            """,
            logger: logger)
        let hash = ByteBuffer(bytes: secret.hash.bytes)
        let inserted = try await connection.statement(
            """
            INSERT INTO tokens (org_id, kind, owner_user_id, username, name, description, scopes, groups, secret_hash,
                                token_prefix, expires_at, status, created_at, updated_at, created_by, created_by_user_id,
                                family_id, rotated_from, access_rules, allowed_cidrs)
            SELECT org_id, kind, owner_user_id, username, name, description, scopes, groups, \(hash),
                   \(secret.displayPrefix), expires_at, \(status), \(now), \(now), created_by, created_by_user_id,
                   \(family), id, access_rules, allowed_cidrs
            FROM tokens WHERE id = \(id)
            RETURNING id
            """,
            logger: logger)
        for try await newID in inserted.decode(UUID.self) { return .rotated(newID) }
        throw StoreError.noRows
    }

    /// Revokes the live tokens among `hashes` with reason `leaked` (a rotated-away one still in
    /// its overlap window too), each with its audit event; returns their ids.
    public func revokeLeaked(_ hashes: [TokenHash], actor: AuditActor) async throws -> [UUID] {
        let rows = try await connection.statement(
            """
            UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'leaked', grace_until = NULL,
                              updated_at = now()
            WHERE secret_hash = ANY(\(hashes.map { ByteBuffer(bytes: $0.bytes) })::bytea[])
              -- live, or rotated away but still in its overlap window (it still verifies)
              AND (status <> 'revoked' OR (revoked_reason = 'rotated' AND grace_until > now()))
            RETURNING id, org_id, username
            """, logger: logger)
        var revoked: [(UUID, UUID, String)] = []
        for try await row in rows.decode((UUID, UUID, String).self) { revoked.append(row) }
        for (id, org, username) in revoked {
            try await AuditRepository(connection, logger: logger).record(
                actor.event(
                    orgID: org, action: .tokenRevoked, token: id, target: username, details: ["reason": "leaked"]))
        }
        return revoked.map(\.0)
    }

    /// Inserts a token row and its audit event (`audit`, whose target is the new token) in one
    /// statement — so one implicit transaction and one round trip — and returns the token as
    /// lists show it. The audit row's triggers (webhooks) see the token: after-row triggers fire at
    /// the end of the statement. Constraint and trigger refusals are the plain insert's.
    public func insertAudited(_ row: NewTokenRow, audit: AuditEvent, mode: StatementMode) async throws
        -> TokenRecord
    {
        guard let record = try await connection.rows(InsertAudited(row, audit), mode: mode, logger: logger).first
        else { throw StoreError.noRows }
        return record
    }

    /// The token, its audit event and the row as lists show it, in one prepared statement.
    struct InsertAudited: FixedStatement {
        static let sql = InsertAudited(.sample, .sample).query.sql
        let query: PostgresQuery

        init(_ row: NewTokenRow, _ audit: AuditEvent) {
            query = """
                WITH t AS (
                    INSERT INTO tokens (\(unescaped: TokenRepository.insertColumns)) VALUES (\(newToken: row)) RETURNING *
                ), audit AS (
                    INSERT INTO audit_events (\(unescaped: AuditRepository.columns))
                    SELECT \(audit: audit, targetToken: "t.id") FROM t
                )
                SELECT \(unescaped: TokenRepository.tokenColumns) FROM t JOIN organizations o ON o.id = t.org_id
                """
        }

        func decodeRow(_ row: PostgresRow) throws -> TokenRecord { try TokenRepository.tokenRecord(row) }
    }

    /// Inserts a token row alone (fixtures, tests); returns its `tokenUUID`.
    public func insert(_ row: NewTokenRow) async throws -> UUID {
        let rows = try await connection.statement(
            "INSERT INTO tokens (\(unescaped: Self.insertColumns)) VALUES (\(newToken: row)) RETURNING id",
            logger: logger)
        return try await rows.decode(UUID.self).firstValue()
    }

    /// The columns ``PostgresQuery/StringInterpolation/appendInterpolation(newToken:)`` fills.
    static let insertColumns = """
        org_id, kind, owner_user_id, username, name, description, scopes, groups, secret_hash, token_prefix, expires_at,
        created_at, updated_at, created_by, created_by_user_id, source, trust_policy_id, federated_issuer,
        federated_subject, federated_jti, access_rules, allowed_cidrs
        """
}

extension PostgresQuery.StringInterpolation {
    /// A new token's values, bound, in the order of ``TokenRepository/insertColumns``: one list
    /// for every statement that inserts a token (`VALUES (…)` or `SELECT … FROM`).
    mutating func appendInterpolation(newToken row: NewTokenRow) {
        appendInterpolation(row.orgID)
        appendLiteral(", ")
        appendInterpolation(row.kind.rawValue)
        appendLiteral(", ")
        appendInterpolation(row.ownerUserID)
        appendLiteral(", ")
        appendInterpolation(row.username)
        appendLiteral(", ")
        appendInterpolation(row.name)
        appendLiteral(", ")
        appendInterpolation(row.description)
        appendLiteral(", ")
        appendInterpolation(row.scopes)
        appendLiteral(", ")
        appendInterpolation(row.groups)
        appendLiteral(", ")
        appendInterpolation(ByteBuffer(bytes: row.secret.hash.bytes))
        appendLiteral(", ")
        appendInterpolation(row.secret.displayPrefix)
        appendLiteral(", ")
        appendInterpolation(row.expiresAt)
        appendLiteral(", ")
        appendInterpolation(row.createdAt)
        appendLiteral(", ")
        appendInterpolation(row.createdAt)
        appendLiteral(", ")
        appendInterpolation(row.createdBy)
        appendLiteral(", ")
        appendInterpolation(row.createdByUserID)
        appendLiteral(", ")
        appendInterpolation(row.federation == nil ? "direct" : "federation")
        appendLiteral(", ")
        appendInterpolation(row.federation?.trustPolicyID)
        appendLiteral(", ")
        appendInterpolation(row.federation?.issuer)
        appendLiteral(", ")
        appendInterpolation(row.federation?.subject)
        appendLiteral(", ")
        appendInterpolation(row.federation?.jti)
        appendLiteral(", ")
        appendInterpolation(row.accessRules.map(\.text))
        appendLiteral(", ")
        appendInterpolation(row.allowedCidrs.map(\.text))
        appendLiteral("::cidr[]")
    }
}

/// What a token list and its count both select: the org, what the caller may see, and the
/// query's kind, status, search and live-only filters. One fragment, so the BentoCloud `total`
/// can never disagree with the pages it counts.
struct TokenFilter {
    let orgID: UUID
    let visibleTo: UUID?
    let all: Bool
    let query: TokenQuery
}

extension PostgresQuery.StringInterpolation {
    /// `t.org_id = … AND …` over `tokens t`, every value bound.
    mutating func appendInterpolation(filter: TokenFilter) {
        let kind = filter.query.kind?.rawValue
        let status = filter.query.status?.rawValue
        let pattern = filter.query.search.map(TokenRepository.containsPattern)
        appendLiteral("t.org_id = ")
        appendInterpolation(filter.orgID)
        appendLiteral(" AND (")
        appendInterpolation(filter.all)
        appendLiteral(" OR t.kind = 'organization' OR t.owner_user_id = ")
        appendInterpolation(filter.visibleTo)
        appendLiteral(") AND (")
        appendInterpolation(kind)
        appendLiteral("::text IS NULL OR t.kind = ")
        appendInterpolation(kind)
        appendLiteral(") AND (")
        appendInterpolation(status)
        appendLiteral("::text IS NULL OR t.status = ")
        appendInterpolation(status)
        appendLiteral(") AND (")
        appendInterpolation(pattern)
        appendLiteral("::text IS NULL OR t.search_text LIKE lower(")
        appendInterpolation(pattern)
        appendLiteral(")) AND (NOT ")
        appendInterpolation(filter.query.liveOnly)
        appendLiteral(" OR t.status <> 'revoked')")
        // A literal (one of two fixed words), so the planner can use the partial index of direct tokens.
        if let source = filter.query.source { appendLiteral(" AND t.source = '\(source.rawValue)'") }
    }
}

extension NewTokenRow {
    /// Any row: prepared statements take their SQL text from one (``FixedStatement``).
    static let sample = NewTokenRow(
        orgID: UUID(), kind: .organization, ownerUserID: nil, username: "sample", name: "sample", description: nil,
        scopes: [], groups: [], secret: .generate(kind: .organization), expiresAt: nil, createdAt: Date(),
        createdBy: "sample", createdByUserID: nil)
}

extension AuditEvent {
    static let sample = AuditEvent(orgID: nil, actorUsername: nil, actorKind: .system, action: .tokenCreated)
}
