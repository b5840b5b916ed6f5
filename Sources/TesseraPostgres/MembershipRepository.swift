import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

/// Memberships (`memberships`): who is in which org, with which role and groups.
public struct MembershipRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// The membership, suspended or not (SCIM sees both).
    public func find(orgID: UUID, userID: UUID) async throws -> MemberRecord? {
        try await list(orgID: orgID, userID: userID).first
    }

    /// The membership a person acts through: nil when there is none or it is suspended.
    public func acting(orgID: UUID, userID: UUID) async throws -> MemberRecord? {
        try await find(orgID: orgID, userID: userID).flatMap { $0.suspended ? nil : $0 }
    }

    /// Members ordered by username; `userID`, `username` (case-insensitive) and `externalID` narrow
    /// the list; `forUpdate` locks the rows (a SCIM read-modify-write).
    public func list(
        orgID: UUID, userID: UUID? = nil, username: String? = nil, externalID: String? = nil,
        forUpdate: Bool = false, offset: Int = 0, limit: Int? = nil
    ) async throws -> [MemberRecord] {
        let rows = try await connection.statement(
            """
            SELECT u.id, u.username, m.role, m.groups, u.status, m.created_at, m.active, m.suspended,
                   m.scim_managed, m.external_id, m.profile::text, m.version, m.updated_at
            FROM memberships m JOIN users u ON u.id = m.user_id
            WHERE m.org_id = \(orgID) AND (\(userID)::uuid IS NULL OR m.user_id = \(userID))
              AND (\(username)::text IS NULL OR lower(u.username) = lower(\(username)))
              AND (\(externalID)::text IS NULL OR m.external_id = \(externalID))
            ORDER BY u.username, u.id
            OFFSET \(offset) LIMIT \(limit)
            \(unescaped: forUpdate ? "FOR UPDATE OF m" : "")
            """,
            logger: logger)
        var members: [MemberRecord] = []
        for try await row in rows {
            let (
                id, username, role, groups, status, created, active, suspended, scim, external, profile, version,
                updated
            ) =
                try row.decode(
                    (UUID, String, String, [String], String, Date, Bool, Bool, Bool, String?, String, Int64, Date).self)
            members.append(
                MemberRecord(
                    userID: id, username: username, role: MembershipRole(rawValue: role) ?? .member, groups: groups,
                    userStatus: UserStatus(stored: status), createdAt: created, active: active, suspended: suspended,
                    scimManaged: scim, externalID: external, profile: profile, version: version, updatedAt: updated))
        }
        return members
    }

    /// Removes a membership after revoking the member's personal tokens in that org
    /// (`owner_left_org`); returns the revoked token ids, or nil when there was no membership.
    public func remove(orgID: UUID, userID: UUID) async throws -> [UUID]? {
        // Lock the membership first: a token insert racing this removal either committed before
        // (and is revoked below, READ COMMITTED sees it) or waits on the lock and then fails its
        // foreign key. Revoking first and locking second let a token slip in between.
        let locked = try await connection.statement(
            "SELECT 1 FROM memberships WHERE org_id = \(orgID) AND user_id = \(userID) FOR UPDATE", logger: logger)
        var exists = false
        for try await _ in locked { exists = true }
        guard exists else { return nil }
        let revoked = try await TokenRepository(connection, logger: logger).revokePersonal(
            userID: userID, orgID: orgID, reason: "owner_left_org")
        let rows = try await connection.statement(
            "DELETE FROM memberships WHERE org_id = \(orgID) AND user_id = \(userID) RETURNING user_id", logger: logger)
        for try await _ in rows { return revoked.map(\.id) }
        return nil
    }

    /// Removes every membership of a user; returns the organizations they were in.
    public func removeAll(userID: UUID) async throws -> [UUID] {
        var orgs: [UUID] = []
        let rows = try await connection.statement(
            "DELETE FROM memberships WHERE user_id = \(userID) RETURNING org_id", logger: logger)
        for try await org in rows.decode(UUID.self) { orgs.append(org) }
        return orgs
    }

    public func put(orgID: UUID, userID: UUID, role: MembershipRole, groups: [String])
        async throws
    {
        try await connection.statement(
            """
            INSERT INTO memberships (org_id, user_id, role, groups) VALUES (\(orgID), \(userID), \(role.rawValue), \(groups))
            ON CONFLICT (org_id, user_id) DO UPDATE
                SET role = EXCLUDED.role, groups = EXCLUDED.groups, updated_at = now()
            """,
            logger: logger
        )
    }
}

/// What ``MembershipRepository/settle(orgID:userIDs:)`` changed for one member.
public struct MembershipChange: Sendable, Equatable {
    public let userID: UUID
    public let username: String
    public let oldRole: MembershipRole
    public let newRole: MembershipRole
    public let wasSuspended: Bool
    public let isSuspended: Bool
}

extension MembershipRepository {
    /// Recomputes role and suspension from each member's groups, SCIM `active` and the org's
    /// adminGroup/userGroup (DESIGN §12): with adminGroup set, admin exactly while in it; with
    /// userGroup set, suspended when in neither group; inactive over SCIM, suspended. All members
    /// when `userIDs` is nil. Only rows that change are written (and so notify the caches);
    /// returns them. Call inside the transaction of the change that moved the groups.
    public func settle(orgID: UUID, userIDs: [UUID]?) async throws -> [MembershipChange] {
        let rows = try await connection.statement(
            """
            WITH before AS (
                SELECT m.user_id, m.role, m.suspended FROM memberships m
                WHERE m.org_id = \(orgID) AND (\(userIDs)::uuid[] IS NULL OR m.user_id = ANY(\(userIDs)::uuid[]))
                FOR UPDATE
            ), target AS (
                SELECT m.user_id,
                       CASE WHEN o.admin_group IS NULL THEN m.role
                            WHEN m.groups @> ARRAY[o.admin_group] THEN 'admin' ELSE 'member' END AS role,
                       (NOT m.active
                        OR (o.user_group IS NOT NULL AND NOT m.groups @> ARRAY[o.user_group]
                            AND NOT (o.admin_group IS NOT NULL AND m.groups @> ARRAY[o.admin_group]))) AS suspended
                FROM before b
                JOIN memberships m ON m.org_id = \(orgID) AND m.user_id = b.user_id
                JOIN organizations o ON o.id = m.org_id
            )
            UPDATE memberships m
            SET role = t.role, suspended = t.suspended, version = m.version + 1, updated_at = now()
            FROM target t, before b, users u
            WHERE m.org_id = \(orgID) AND m.user_id = t.user_id AND b.user_id = t.user_id AND u.id = m.user_id
              AND (m.role <> t.role OR m.suspended <> t.suspended)
            RETURNING m.user_id, u.username, b.role, m.role, b.suspended, m.suspended
            """, logger: logger)
        var changes: [MembershipChange] = []
        for try await (id, username, oldRole, newRole, was, now) in rows.decode(
            (UUID, String, String, String, Bool, Bool).self)
        {
            changes.append(
                MembershipChange(
                    userID: id, username: username, oldRole: MembershipRole(rawValue: oldRole) ?? .member,
                    newRole: MembershipRole(rawValue: newRole) ?? .member, wasSuspended: was, isSuspended: now))
        }
        return changes
    }

    /// Ends the member's console sessions whose current org is `orgSlug` (a suspension).
    public func endConsoleSessions(username: String, orgSlug: String) async throws {
        try await connection.statement(
            """
            DELETE FROM console_sessions WHERE data->>'username' = \(username) AND data->>'org' = \(orgSlug)
            """, logger: logger)
    }
}

/// What SCIM writes on a membership (the IdP's view of a person in one org).
public struct SCIMProfile: Sendable, Equatable {
    public var active: Bool
    public var externalID: String?
    /// name, displayName, emails as a JSON object.
    public var profile: String

    public init(active: Bool, externalID: String?, profile: String) {
        self.active = active
        self.externalID = externalID
        self.profile = profile
    }
}

extension MembershipRepository {
    /// Adds a membership made by SCIM (role member, no groups); false when it exists already.
    public func insertProvisioned(orgID: UUID, userID: UUID, _ scim: SCIMProfile) async throws -> Bool {
        let rows = try await connection.statement(
            """
            INSERT INTO memberships (org_id, user_id, role, groups, active, scim_managed, external_id, profile)
            VALUES (\(orgID), \(userID), 'member', '{}', \(scim.active), true, \(scim.externalID), \(scim.profile)::jsonb)
            ON CONFLICT (org_id, user_id) DO NOTHING
            RETURNING user_id
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Writes SCIM's attributes of a membership and bumps its version.
    public func updateProvisioned(orgID: UUID, userID: UUID, _ scim: SCIMProfile) async throws {
        try await connection.statement(
            """
            UPDATE memberships SET active = \(scim.active), external_id = \(scim.externalID),
                profile = \(scim.profile)::jsonb, scim_managed = true, version = version + 1, updated_at = now()
            WHERE org_id = \(orgID) AND user_id = \(userID)
            """, logger: logger)
    }

    /// How many members the org has.
    public func count(orgID: UUID) async throws -> Int {
        let rows = try await connection.statement(
            "SELECT count(*)::bigint FROM memberships WHERE org_id = \(orgID)", logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    /// How many organizations `userID` belongs to.
    public func count(userID: UUID) async throws -> Int {
        let rows = try await connection.statement(
            "SELECT count(*)::bigint FROM memberships WHERE user_id = \(userID)", logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }
}
