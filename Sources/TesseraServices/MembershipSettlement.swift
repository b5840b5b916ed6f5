import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// Roles and suspensions that follow the IdP's groups (DESIGN §12), settled inside the
/// transaction of whatever moved the groups: a SCIM change, a member PUT, a policy change, an SSO
/// sign-in. A member newly suspended loses every personal token in the org (`owner_deprovisioned`,
/// each audited, so `token.revoked` webhooks fire) and their console sessions there; a demotion
/// reaches every replica's cache through the membership trigger (the authority rule).
public enum MembershipSettlement {
    /// Settles `userIDs` (all members when nil) of `org`; returns what changed.
    @discardableResult
    public static func settle(
        _ connection: PostgresConnection, org: OrganizationRecord, userIDs: [UUID]?, actor: AuditActor, logger: Logger
    ) async throws -> [MembershipChange] {
        let members = MembershipRepository(connection, logger: logger)
        let audit = AuditRepository(connection, logger: logger)
        let changes = try await members.settle(orgID: org.id, userIDs: userIDs)
        for change in changes {
            if change.isSuspended && !change.wasSuspended {
                try await suspended(connection, change, org: org, actor: actor, logger: logger)
            } else if change.wasSuspended && !change.isSuspended {
                try await audit.record(
                    actor.event(orgID: org.id, action: .memberReactivated, target: change.username))
            }
            if change.oldRole != change.newRole {
                try await audit.record(
                    actor.event(
                        orgID: org.id, action: .memberUpdated, target: change.username,
                        details: ["role": change.newRole.rawValue, "reason": "group_mapping"]))
            }
        }
        return changes
    }

    private static func suspended(
        _ connection: PostgresConnection, _ change: MembershipChange, org: OrganizationRecord, actor: AuditActor,
        logger: Logger
    ) async throws {
        let audit = AuditRepository(connection, logger: logger)
        let revoked = try await TokenRepository(connection, logger: logger).revokePersonal(
            userID: change.userID, orgID: org.id, reason: RevocationReason.ownerDeprovisioned)
        try await audit.record(
            actor.event(
                orgID: org.id, action: .tokenRevoked, target: change.username,
                details: ["reason": RevocationReason.ownerDeprovisioned]),
            forEachOf: revoked.map(\.id))
        try await MembershipRepository(connection, logger: logger).endConsoleSessions(
            username: change.username, orgSlug: org.slug)
        try await audit.record(
            actor.event(
                orgID: org.id, action: .memberSuspended, target: change.username,
                details: ["revokedTokens": String(revoked.count)]))
    }
}

/// Why a token was revoked (`tokens.revoked_reason`), for the reasons services write.
public enum RevocationReason {
    public static let ownerDeprovisioned = "owner_deprovisioned"
    /// The trust policy that issued an exchanged token was deleted (DESIGN §13).
    public static let trustPolicyDeleted = "trust_policy_deleted"
}
