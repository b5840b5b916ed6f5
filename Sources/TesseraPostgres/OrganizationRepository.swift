import Foundation
import Logging
import PostgresNIO
import TesseraCore

/// A user's membership in an organization, as listed.
public struct MemberRecord: Sendable, Equatable {
    public var userID: UUID
    public var username: String
    public var role: MembershipRole
    public var groups: [String]
    public var userStatus: UserStatus
    public var createdAt: Date
    /// What the IdP last said over SCIM (`active`); true when nobody provisions the member.
    public var active: Bool = true
    /// Suspended: SCIM said inactive, or the org's userGroup leaves the member out. A suspended
    /// member acts in the org no more (no sign-in, no token).
    public var suspended: Bool = false
    /// Created or last changed over SCIM.
    public var scimManaged: Bool = false
    public var externalID: String?
    /// The SCIM attributes kept for the IdP (name, displayName, emails), as a JSON object.
    public var profile: String = "{}"
    /// The SCIM version (ETag), bumped by every change.
    public var version: Int64 = 1
    public var updatedAt: Date = .distantPast
}

/// A global user record.
public struct UserRecord: Sendable, Equatable {
    public var id: UUID
    public var username: String
    public var status: UserStatus
    public var platformAdmin: Bool
    public var createdAt: Date
    public var updatedAt: Date
}

extension UserStatus {
    /// `users.status` (a CHECK keeps it to these values; anything else reads as disabled, closed).
    init(stored: String) { self = UserStatus(rawValue: stored) ?? .disabled }
}

/// Organizations (`organizations`, `scopes`): lookups, inserts with the built-in catalog,
/// policy changes, deletion.
public struct OrganizationRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    static let organizationColumns = """
        id, slug, display_name, default_token_lifetime_days, max_token_lifetime_days, allow_non_expiring_tokens,
        idle_timeout_days, api_group, user_tokens_enabled, default_scopes, created_at, updated_at, personal_token_limit,
        admin_group, user_group
        """

    public func find(slug: String) async throws -> OrganizationRecord? {
        let rows = try await connection.statement(
            "SELECT \(unescaped: Self.organizationColumns) FROM organizations WHERE slug = \(slug)", logger: logger)
        for try await row in rows { return try Self.organizationRecord(row) }
        return nil
    }

    public func find(id: UUID) async throws -> OrganizationRecord? {
        try await find(id: id, mode: .unnamed)
    }

    /// The organization by id, as a prepared statement unless `mode` says otherwise: every API
    /// call made with a token reads its org this way.
    public func find(id: UUID, mode: StatementMode) async throws -> OrganizationRecord? {
        try await connection.rows(ByID(id: id), mode: mode, logger: logger).first
    }

    struct ByID: FixedStatement {
        static let sql = ByID(id: UUID()).query.sql
        let query: PostgresQuery

        init(id: UUID) {
            query =
                "SELECT \(unescaped: OrganizationRepository.organizationColumns) FROM organizations WHERE id = \(id)"
        }

        func decodeRow(_ row: PostgresRow) throws -> OrganizationRecord {
            try OrganizationRepository.organizationRecord(row)
        }
    }

    /// Organizations, all of them or those `userID` acts in (suspended memberships left out).
    public func list(memberUserID: UUID?) async throws -> [OrganizationRecord] {
        let rows = try await connection.statement(
            """
            SELECT \(unescaped: Self.organizationColumns) FROM organizations o
            WHERE \(memberUserID)::uuid IS NULL
               OR EXISTS (SELECT 1 FROM memberships m
                          WHERE m.org_id = o.id AND m.user_id = \(memberUserID) AND NOT m.suspended)
            ORDER BY slug
            """,
            logger: logger)
        var records: [OrganizationRecord] = []
        for try await row in rows { records.append(try Self.organizationRecord(row)) }
        return records
    }

    /// Organizations with a group mapping that concern a person signing in: those they belong to,
    /// and (`justInTime`) those whose mapping groups are among `groups`.
    public func mapped(for userID: UUID?, groups: [String], justInTime: Bool) async throws -> [OrganizationRecord] {
        let rows = try await connection.statement(
            """
            SELECT \(unescaped: Self.organizationColumns) FROM organizations o
            WHERE (o.admin_group IS NOT NULL OR o.user_group IS NOT NULL)
              AND (EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = o.id AND m.user_id = \(userID))
                   OR (\(justInTime) AND (o.admin_group = ANY(\(groups)::text[]) OR o.user_group = ANY(\(groups)::text[]))))
            ORDER BY slug
            """,
            logger: logger)
        var records: [OrganizationRecord] = []
        for try await row in rows { records.append(try Self.organizationRecord(row)) }
        return records
    }

    public func scopeCatalog(orgID: UUID) async throws -> [ScopeCatalog.Entry] {
        let rows = try await connection.statement(
            "SELECT name, description, admin_only, implies FROM scopes WHERE org_id = \(orgID) ORDER BY name",
            logger: logger)
        var entries: [ScopeCatalog.Entry] = []
        for try await (name, description, adminOnly, implies) in rows.decode((String, String, Bool, [String]).self) {
            entries.append(.init(name: name, description: description, adminOnly: adminOnly, implies: implies))
        }
        return entries
    }

    static func organizationRecord(_ row: PostgresRow) throws -> OrganizationRecord {
        let cells = row.makeRandomAccess()
        return OrganizationRecord(
            id: try cells[0].decode(UUID.self),
            slug: try cells[1].decode(String.self),
            displayName: try cells[2].decode(String.self),
            defaultTokenLifetimeDays: try cells[3].decode(Int.self),
            maxTokenLifetimeDays: try cells[4].decode(Int?.self),
            allowNonExpiringTokens: try cells[5].decode(Bool.self),
            idleTimeoutDays: try cells[6].decode(Int?.self),
            apiGroup: try cells[7].decode(String?.self),
            userTokensEnabled: try cells[8].decode(Bool.self),
            defaultScopes: try cells[9].decode([String].self),
            personalTokenLimit: try cells[12].decode(Int.self),
            adminGroup: try cells[13].decode(String?.self),
            userGroup: try cells[14].decode(String?.self),
            createdAt: try cells[10].decode(Date.self),
            updatedAt: try cells[11].decode(Date.self)
        )
    }

    /// Applies `patch` in one statement (COALESCE keeps absent fields); returns false if no org.
    /// A new maximum lifetime given without a default lowers the default to fit under it (an admin
    /// asking for a cap gets the cap); both given and contradicting each other is a CHECK violation.
    public func update(id: UUID, patch: OrganizationPatch) async throws -> Bool {
        let rows = try await connection.statement(
            """
            UPDATE organizations SET
                display_name = coalesce(\(patch.displayName), display_name),
                default_token_lifetime_days = CASE
                    WHEN \(patch.defaultTokenLifetimeDays)::integer IS NOT NULL THEN \(patch.defaultTokenLifetimeDays)::integer
                    WHEN \(patch.maxTokenLifetimeDays ?? nil)::integer IS NOT NULL
                        THEN least(default_token_lifetime_days, \(patch.maxTokenLifetimeDays ?? nil)::integer)
                    ELSE default_token_lifetime_days END,
                max_token_lifetime_days = CASE WHEN \(patch.maxTokenLifetimeDays != nil) THEN \(patch.maxTokenLifetimeDays ?? nil) ELSE max_token_lifetime_days END,
                allow_non_expiring_tokens = coalesce(\(patch.allowNonExpiringTokens), allow_non_expiring_tokens),
                idle_timeout_days = CASE WHEN \(patch.idleTimeoutDays != nil) THEN \(patch.idleTimeoutDays ?? nil) ELSE idle_timeout_days END,
                api_group = CASE WHEN \(patch.apiGroup != nil) THEN \(patch.apiGroup ?? nil) ELSE api_group END,
                admin_group = CASE WHEN \(patch.adminGroup != nil) THEN \(patch.adminGroup ?? nil) ELSE admin_group END,
                user_group = CASE WHEN \(patch.userGroup != nil) THEN \(patch.userGroup ?? nil) ELSE user_group END,
                user_tokens_enabled = coalesce(\(patch.userTokensEnabled), user_tokens_enabled),
                default_scopes = coalesce(\(patch.defaultScopes), default_scopes),
                personal_token_limit = coalesce(\(patch.personalTokenLimit)::integer, personal_token_limit),
                updated_at = now()
            WHERE id = \(id)
            RETURNING id
            """,
            logger: logger)
        var found = false
        for try await _ in rows { found = true }
        guard found else { return false }
        for entry in patch.scopes ?? [] {
            try await connection.statement(
                """
                INSERT INTO scopes (org_id, name, description, admin_only, implies)
                VALUES (\(id), \(entry.name), \(entry.description), \(entry.adminOnly), \(entry.implies))
                ON CONFLICT (org_id, name) DO UPDATE
                    SET description = EXCLUDED.description, admin_only = EXCLUDED.admin_only, implies = EXCLUDED.implies
                    WHERE NOT scopes.built_in
                """,
                logger: logger)
        }
        return true
    }

    public func delete(id: UUID) async throws -> Bool {
        let rows = try await connection.statement(
            "DELETE FROM organizations WHERE id = \(id) RETURNING id", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Inserts an organization and its built-in scope catalog; returns its id.
    public func insert(slug: String, displayName: String) async throws -> UUID {
        let rows = try await connection.statement(
            "INSERT INTO organizations (slug, display_name) VALUES (\(slug), \(displayName)) RETURNING id",
            logger: logger
        )
        let orgID = try await rows.decode(UUID.self).firstValue()
        for scope in BuiltInScope.all {
            try await connection.statement(
                """
                INSERT INTO scopes (org_id, name, description, admin_only, implies, built_in)
                VALUES (\(orgID), \(scope.name), \(scope.description), \(scope.adminOnly), \(scope.implies), true)
                """,
                logger: logger
            )
        }
        return orgID
    }
}
