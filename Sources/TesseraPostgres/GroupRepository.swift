import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

/// A group of an organization as its IdP provisions it (`org_groups`, migration 0010). Its members
/// are the memberships whose `groups` hold its name.
public struct GroupRecord: Sendable, Equatable {
    public var id: UUID
    public var orgID: UUID
    public var displayName: String
    public var externalID: String?
    public var createdAt: Date
    public var updatedAt: Date
    public var version: Int64
}

/// Groups (`org_groups`) and their memberships.
public struct GroupRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Groups ordered by name; `id`, `displayName` (case-insensitive) and `externalID` narrow
    /// the list; `forUpdate` locks the rows.
    public func list(
        orgID: UUID, id: UUID? = nil, displayName: String? = nil, externalID: String? = nil, forUpdate: Bool = false
    ) async throws -> [GroupRecord] {
        let rows = try await connection.statement(
            """
            SELECT id, org_id, display_name, external_id, created_at, updated_at, version FROM org_groups
            WHERE org_id = \(orgID) AND (\(id)::uuid IS NULL OR id = \(id))
              AND (\(displayName)::text IS NULL OR lower(display_name) = lower(\(displayName)))
              AND (\(externalID)::text IS NULL OR external_id = \(externalID))
            ORDER BY display_name, id
            \(unescaped: forUpdate ? "FOR UPDATE" : "")
            """, logger: logger)
        var groups: [GroupRecord] = []
        for try await (id, org, name, external, created, updated, version) in rows.decode(
            (UUID, UUID, String, String?, Date, Date, Int64).self)
        {
            groups.append(
                GroupRecord(
                    id: id, orgID: org, displayName: name, externalID: external, createdAt: created, updatedAt: updated,
                    version: version))
        }
        return groups
    }

    /// Inserts a group; nil when the name (or externalId) is taken in the org.
    public func insert(orgID: UUID, displayName: String, externalID: String?) async throws -> GroupRecord? {
        let rows = try await connection.statement(
            """
            INSERT INTO org_groups (org_id, display_name, external_id) VALUES (\(orgID), \(displayName), \(externalID))
            ON CONFLICT DO NOTHING
            RETURNING id
            """, logger: logger)
        var id: UUID?
        for try await value in rows.decode(UUID.self) { id = value }
        guard let id else { return nil }
        return try await list(orgID: orgID, id: id).first
    }

    /// Renames (the memberships' `groups` and the org's group mapping follow, in the caller's
    /// transaction) and sets the externalId; bumps the version.
    public func update(_ group: GroupRecord, displayName: String, externalID: String?) async throws {
        try await connection.statement(
            """
            UPDATE org_groups SET display_name = \(displayName), external_id = \(externalID), updated_at = now(),
                version = version + 1
            WHERE id = \(group.id)
            """, logger: logger)
        if displayName != group.displayName {
            try await connection.statement(
                """
                UPDATE memberships SET groups = array_replace(groups, \(group.displayName), \(displayName)),
                    version = version + 1, updated_at = now()
                WHERE org_id = \(group.orgID) AND groups @> ARRAY[\(group.displayName)]::text[]
                """, logger: logger)
            // The org's mapping follows a renamed group (the IdP renamed it; it is the same group).
            try await connection.statement(
                """
                UPDATE organizations SET
                    admin_group = CASE WHEN admin_group = \(group.displayName) THEN \(displayName) ELSE admin_group END,
                    user_group = CASE WHEN user_group = \(group.displayName) THEN \(displayName) ELSE user_group END,
                    api_group = CASE WHEN api_group = \(group.displayName) THEN \(displayName) ELSE api_group END
                WHERE id = \(group.orgID) AND \(group.displayName) IN (admin_group, user_group, api_group)
                """, logger: logger)
        }
    }

    /// Deletes the group and takes its name out of every membership; returns those members.
    public func delete(_ group: GroupRecord) async throws -> [UUID] {
        let removed = try await removeMembers(group, userIDs: nil)
        try await connection.statement("DELETE FROM org_groups WHERE id = \(group.id)", logger: logger)
        return removed
    }

    /// The members (user id and username), by username.
    public func members(_ group: GroupRecord) async throws -> [(id: UUID, username: String)] {
        let rows = try await connection.statement(
            """
            SELECT u.id, u.username FROM memberships m JOIN users u ON u.id = m.user_id
            WHERE m.org_id = \(group.orgID) AND m.groups @> ARRAY[\(group.displayName)]::text[]
            ORDER BY u.username
            """, logger: logger)
        var members: [(id: UUID, username: String)] = []
        for try await (id, username) in rows.decode((UUID, String).self) { members.append((id, username)) }
        return members
    }

    /// The ids among `userIDs` that are members of the org.
    public func existingMembers(orgID: UUID, userIDs: [UUID]) async throws -> Set<UUID> {
        let rows = try await connection.statement(
            "SELECT user_id FROM memberships WHERE org_id = \(orgID) AND user_id = ANY(\(userIDs)::uuid[])",
            logger: logger)
        var found = Set<UUID>()
        for try await id in rows.decode(UUID.self) { found.insert(id) }
        return found
    }

    /// Adds the group's name to these memberships (those that lack it); returns who changed.
    public func addMembers(_ group: GroupRecord, userIDs: [UUID]) async throws -> [UUID] {
        guard !userIDs.isEmpty else { return [] }
        let rows = try await connection.statement(
            """
            UPDATE memberships SET groups = array_append(groups, \(group.displayName)), version = version + 1,
                updated_at = now(), scim_managed = true
            WHERE org_id = \(group.orgID) AND user_id = ANY(\(userIDs)::uuid[])
              AND NOT groups @> ARRAY[\(group.displayName)]::text[]
            RETURNING user_id
            """, logger: logger)
        var changed: [UUID] = []
        for try await id in rows.decode(UUID.self) { changed.append(id) }
        return changed
    }

    /// Takes the group's name out of these memberships (all of them when nil); returns who changed.
    public func removeMembers(_ group: GroupRecord, userIDs: [UUID]?) async throws -> [UUID] {
        let rows = try await connection.statement(
            """
            UPDATE memberships SET groups = array_remove(groups, \(group.displayName)), version = version + 1,
                updated_at = now()
            WHERE org_id = \(group.orgID) AND groups @> ARRAY[\(group.displayName)]::text[]
              AND (\(userIDs)::uuid[] IS NULL OR user_id = ANY(\(userIDs)::uuid[]))
            RETURNING user_id
            """, logger: logger)
        var changed: [UUID] = []
        for try await id in rows.decode(UUID.self) { changed.append(id) }
        return changed
    }

    /// The org's groups (id and name) among `names`, for a user's read-only `groups`.
    public func named(orgID: UUID, _ names: [String]) async throws -> [(id: UUID, displayName: String)] {
        guard !names.isEmpty else { return [] }
        let rows = try await connection.statement(
            """
            SELECT id, display_name FROM org_groups WHERE org_id = \(orgID) AND display_name = ANY(\(names)::text[])
            ORDER BY display_name
            """, logger: logger)
        var groups: [(id: UUID, displayName: String)] = []
        for try await (id, name) in rows.decode((UUID, String).self) { groups.append((id, name)) }
        return groups
    }
}
