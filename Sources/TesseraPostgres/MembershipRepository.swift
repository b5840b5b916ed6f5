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

    public func find(orgID: UUID, userID: UUID) async throws -> MemberRecord? {
        try await list(orgID: orgID, userID: userID).first
    }

    public func list(orgID: UUID, userID: UUID? = nil) async throws -> [MemberRecord] {
        let rows = try await connection.statement(
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
