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

extension PostgresConnection {
    static let organizationColumns = """
        id, slug, display_name, default_token_lifetime_days, max_token_lifetime_days, allow_non_expiring_tokens,
        idle_timeout_days, api_group, user_tokens_enabled, default_scopes, created_at, updated_at, personal_token_limit
        """

    public func organization(slug: String, logger: Logger) async throws -> OrganizationRecord? {
        let rows = try await statement(
            "SELECT \(unescaped: Self.organizationColumns) FROM organizations WHERE slug = \(slug)", logger: logger)
        for try await row in rows { return try Self.organizationRecord(row) }
        return nil
    }

    public func organization(id: UUID, logger: Logger) async throws -> OrganizationRecord? {
        let rows = try await statement(
            "SELECT \(unescaped: Self.organizationColumns) FROM organizations WHERE id = \(id)", logger: logger)
        for try await row in rows { return try Self.organizationRecord(row) }
        return nil
    }

    /// Organizations, all of them or those `userID` belongs to.
    public func organizations(memberUserID: UUID?, logger: Logger) async throws -> [OrganizationRecord] {
        let rows = try await statement(
            """
            SELECT \(unescaped: Self.organizationColumns) FROM organizations o
            WHERE \(memberUserID)::uuid IS NULL
               OR EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = o.id AND m.user_id = \(memberUserID))
            ORDER BY slug
            """,
            logger: logger)
        var records: [OrganizationRecord] = []
        for try await row in rows { records.append(try Self.organizationRecord(row)) }
        return records
    }

    /// Users by name (for the platform console), optionally those whose name contains `search`.
    public func users(search: String?, limit: Int, logger: Logger) async throws -> [UserRecord] {
        let pattern = search.map(PostgresConnection.containsPattern)
        let rows = try await statement(
            """
            SELECT id, username, status, platform_admin, created_at, updated_at FROM users
            WHERE \(pattern)::text IS NULL OR username ILIKE \(pattern)
            ORDER BY username LIMIT \(limit)
            """,
            logger: logger)
        var users: [UserRecord] = []
        for try await (id, username, status, platformAdmin, createdAt, updatedAt) in rows.decode(
            (UUID, String, String, Bool, Date, Date).self)
        {
            users.append(
                UserRecord(
                    id: id, username: username, status: UserStatus(stored: status), platformAdmin: platformAdmin,
                    createdAt: createdAt, updatedAt: updatedAt))
        }
        return users
    }

    public func scopeCatalog(orgID: UUID, logger: Logger) async throws -> [ScopeCatalog.Entry] {
        let rows = try await statement(
            "SELECT name, description, admin_only, implies FROM scopes WHERE org_id = \(orgID) ORDER BY name",
            logger: logger)
        var entries: [ScopeCatalog.Entry] = []
        for try await (name, description, adminOnly, implies) in rows.decode((String, String, Bool, [String]).self) {
            entries.append(.init(name: name, description: description, adminOnly: adminOnly, implies: implies))
        }
        return entries
    }

    public func user(username: String, logger: Logger) async throws -> UserRecord? {
        let rows = try await statement(
            "SELECT id, username, status, platform_admin, created_at, updated_at FROM users WHERE username = \(username)",
            logger: logger)
        for try await (id, name, status, admin, created, updated) in rows.decode(
            (UUID, String, String, Bool, Date, Date).self)
        {
            return UserRecord(
                id: id, username: name, status: UserStatus(stored: status), platformAdmin: admin, createdAt: created,
                updatedAt: updated)
        }
        return nil
    }

    public func membership(orgID: UUID, userID: UUID, logger: Logger) async throws -> MemberRecord? {
        try await members(orgID: orgID, userID: userID, logger: logger).first
    }

    public func members(orgID: UUID, userID: UUID? = nil, logger: Logger) async throws -> [MemberRecord] {
        let rows = try await statement(
            """
            SELECT u.id, u.username, m.role, m.groups, u.status, m.created_at
            FROM memberships m JOIN users u ON u.id = m.user_id
            WHERE m.org_id = \(orgID) AND (\(userID)::uuid IS NULL OR m.user_id = \(userID))
            ORDER BY u.username
            """,
            logger: logger)
        var members: [MemberRecord] = []
        for try await (id, username, role, groups, status, created) in rows.decode(
            (UUID, String, String, [String], String, Date).self)
        {
            members.append(
                MemberRecord(
                    userID: id, username: username, role: MembershipRole(rawValue: role) ?? .member, groups: groups,
                    userStatus: UserStatus(stored: status), createdAt: created))
        }
        return members
    }

    /// Removes a membership after revoking the member's personal tokens in that org
    /// (`owner_left_org`); returns the revoked token ids, or nil when there was no membership.
    public func removeMembership(orgID: UUID, userID: UUID, logger: Logger) async throws -> [UUID]? {
        // Lock the membership first: a token insert racing this removal either committed before
        // (and is revoked below, READ COMMITTED sees it) or waits on the lock and then fails its
        // foreign key. Revoking first and locking second let a token slip in between.
        let locked = try await statement(
            "SELECT 1 FROM memberships WHERE org_id = \(orgID) AND user_id = \(userID) FOR UPDATE", logger: logger)
        var exists = false
        for try await _ in locked { exists = true }
        guard exists else { return nil }
        let revoked = try await revokePersonalTokens(
            userID: userID, orgID: orgID, reason: "owner_left_org", logger: logger)
        let rows = try await statement(
            "DELETE FROM memberships WHERE org_id = \(orgID) AND user_id = \(userID) RETURNING user_id", logger: logger)
        for try await _ in rows { return revoked.map(\.id) }
        return nil
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
            createdAt: try cells[10].decode(Date.self),
            updatedAt: try cells[11].decode(Date.self)
        )
    }
}
