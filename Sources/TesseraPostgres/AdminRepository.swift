import Foundation
import Logging
import PostgresNIO
import TesseraCore

/// A partial update of an organization's policy (JSON merge-patch semantics: nil = unchanged,
/// `.some(nil)` = cleared).
public struct OrganizationPatch: Sendable {
    public var displayName: String?
    public var defaultTokenLifetimeDays: Int?
    public var maxTokenLifetimeDays: Int??
    public var allowNonExpiringTokens: Bool?
    public var idleTimeoutDays: Int??
    public var apiGroup: String??
    public var userTokensEnabled: Bool?
    public var defaultScopes: [String]?
    public var scopes: [ScopeCatalog.Entry]?
    public var personalTokenLimit: Int?

    public init() {}
}

extension PostgresConnection {
    /// Applies `patch` in one statement (COALESCE keeps absent fields); returns false if no org.
    /// A new maximum lifetime given without a default lowers the default to fit under it (an admin
    /// asking for a cap gets the cap); both given and contradicting each other is a CHECK violation.
    public func updateOrganization(id: UUID, patch: OrganizationPatch, logger: Logger) async throws -> Bool {
        let rows = try await statement(
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
            try await statement(
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

    public func deleteOrganization(id: UUID, logger: Logger) async throws -> Bool {
        let rows = try await statement("DELETE FROM organizations WHERE id = \(id) RETURNING id", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    public func setUser(id: UUID, status: UserStatus?, platformAdmin: Bool?, logger: Logger) async throws {
        try await statement(
            """
            UPDATE users SET status = coalesce(\(status?.rawValue), status),
                             platform_admin = coalesce(\(platformAdmin), platform_admin), updated_at = now()
            WHERE id = \(id)
            """,
            logger: logger)
    }

    public func deleteUser(id: UUID, logger: Logger) async throws {
        try await statement("DELETE FROM users WHERE id = \(id)", logger: logger)
    }

    /// Locks a user's row until the transaction ends: no membership or token can be added for
    /// them meanwhile (those inserts' foreign keys take a KEY SHARE lock on this row).
    public func lockUser(id: UUID, logger: Logger) async throws {
        try await statement("SELECT 1 FROM users WHERE id = \(id) FOR UPDATE", logger: logger)
    }

    /// Removes every membership of a user; returns the organizations they were in.
    public func removeMemberships(userID: UUID, logger: Logger) async throws -> [UUID] {
        var orgs: [UUID] = []
        let rows = try await statement(
            "DELETE FROM memberships WHERE user_id = \(userID) RETURNING org_id", logger: logger)
        for try await org in rows.decode(UUID.self) { orgs.append(org) }
        return orgs
    }
}
