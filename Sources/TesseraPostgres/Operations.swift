import Foundation
import Logging
import PostgresNIO
import TesseraCore

/// Who performs an operation, as the audit trail records it.
public struct AuditActor: Sendable {
    public var username: String?
    public var kind: AuditActorKind
    public var tokenID: UUID?
    public var sourceIP: String?

    public init(username: String?, kind: AuditActorKind, tokenID: UUID? = nil, sourceIP: String? = nil) {
        self.username = username
        self.kind = kind
        self.tokenID = tokenID
        self.sourceIP = sourceIP
    }

    /// An operator at the database (`tessera admin …`): the OS user, kind `cli`.
    public static func cli() -> AuditActor {
        AuditActor(username: ProcessInfo.processInfo.environment["USER"] ?? "operator", kind: .cli)
    }

    public func event(
        orgID: UUID?, action: AuditAction, token: UUID? = nil, target: String? = nil, details: [String: String] = [:]
    ) -> AuditEvent {
        AuditEvent(
            orgID: orgID, actorUsername: username, actorKind: kind, actorTokenID: tokenID, action: action,
            targetTokenID: token, targetUsername: target, sourceIP: sourceIP, details: details)
    }
}

/// The membership and user operations with their cascades and audit events, each one
/// transaction. The HTTP API and `tessera admin` both call these, so an operator at the database
/// gets exactly the cascade an admin gets over HTTP (DESIGN §5).
extension TesseraStore {
    /// Creates an organization with its built-in scope catalog. A taken slug is a unique
    /// violation (`PSQLError.isUniqueViolation`).
    public func createOrganization(slug: String, displayName: String, by actor: AuditActor) async throws
        -> OrganizationRecord
    {
        try await transaction { connection in
            let id = try await connection.insertOrganization(slug: slug, displayName: displayName, logger: logger)
            try await connection.recordAudit(actor.event(orgID: id, action: .orgCreated), logger: logger)
            guard let record = try await connection.organization(id: id, logger: logger) else {
                throw StoreError.noRows
            }
            return record
        }
    }

    /// Adds `username` to the org (creating the user record when new) or changes their role and
    /// groups; nil keeps what is there (a new member defaults to `member`, no groups).
    public func putMember(
        orgID: UUID, username: String, role: MembershipRole?, groups: [String]?, by actor: AuditActor
    ) async throws -> (member: MemberRecord, added: Bool) {
        try await transaction { connection in
            let userID = try await connection.upsertUser(username: username, platformAdmin: false, logger: logger)
            let existing = try await connection.membership(orgID: orgID, userID: userID, logger: logger)
            let newRole = role ?? existing?.role ?? .member
            try await connection.putMembership(
                orgID: orgID, userID: userID, role: newRole, groups: groups ?? existing?.groups ?? [], logger: logger)
            try await connection.recordAudit(
                actor.event(
                    orgID: orgID, action: existing == nil ? .memberAdded : .memberUpdated, target: username,
                    details: ["role": newRole.rawValue]),
                logger: logger)
            guard let member = try await connection.membership(orgID: orgID, userID: userID, logger: logger) else {
                throw StoreError.noRows
            }
            return (member, existing == nil)
        }
    }

    /// Removes a membership (an admin removes, or the member leaves); their personal tokens in
    /// this org are revoked first (`owner_left_org`). False when there was no such membership.
    public func removeMember(orgID: UUID, username: String, leaving: Bool, by actor: AuditActor) async throws -> Bool {
        try await transaction { connection -> Bool in
            guard let user = try await connection.user(username: username, logger: logger),
                let revoked = try await connection.removeMembership(orgID: orgID, userID: user.id, logger: logger)
            else { return false }
            for tokenID in revoked {
                try await connection.recordAudit(
                    actor.event(
                        orgID: orgID, action: .tokenRevoked, token: tokenID, target: username,
                        details: ["reason": "owner_left_org"]),
                    logger: logger)
            }
            try await connection.recordAudit(
                actor.event(orgID: orgID, action: leaving ? .memberLeft : .memberRemoved, target: username),
                logger: logger)
            return true
        }
    }

    /// Sets a user's status and platform-admin flag (nil: unchanged). Disabling revokes their
    /// personal tokens in every org (`owner_disabled`).
    public func updateUser(_ user: UserRecord, status: UserStatus?, platformAdmin: Bool?, by actor: AuditActor)
        async throws
    {
        try await transaction { connection in
            if status == .disabled && user.status != .disabled {
                try await revokeEverywhere(connection, user, reason: "owner_disabled", by: actor)
            }
            try await connection.setUser(id: user.id, status: status, platformAdmin: platformAdmin, logger: logger)
            try await connection.recordAudit(
                actor.event(
                    orgID: nil, action: .userUpdated, target: user.username,
                    details: ["status": (status ?? user.status).rawValue]),
                logger: logger)
        }
    }

    /// Deletes a user after revoking their personal tokens everywhere (`owner_deleted`) and
    /// removing them from each organization (`member.removed` in its audit trail, and so to its
    /// webhooks, as if an admin had removed them); organization tokens they created stay.
    public func deleteUser(_ user: UserRecord, by actor: AuditActor) async throws {
        try await transaction { connection in
            try await connection.lockUser(id: user.id, logger: logger)
            try await revokeEverywhere(connection, user, reason: "owner_deleted", by: actor)
            for orgID in try await connection.removeMemberships(userID: user.id, logger: logger) {
                try await connection.recordAudit(
                    actor.event(
                        orgID: orgID, action: .memberRemoved, target: user.username, details: ["reason": "user_deleted"]
                    ),
                    logger: logger)
            }
            try await connection.deleteUser(id: user.id, logger: logger)
            try await connection.recordAudit(
                actor.event(orgID: nil, action: .userDeleted, target: user.username), logger: logger)
        }
    }

    private func revokeEverywhere(
        _ connection: PostgresConnection, _ user: UserRecord, reason: String, by actor: AuditActor
    ) async throws {
        let revoked = try await connection.revokePersonalTokens(
            userID: user.id, orgID: nil, reason: reason, logger: logger)
        for token in revoked {
            try await connection.recordAudit(
                actor.event(
                    orgID: token.orgID, action: .tokenRevoked, token: token.id, target: user.username,
                    details: ["reason": reason]),
                logger: logger)
        }
    }

    /// A user by name, outside any transaction.
    public func user(named username: String) async throws -> UserRecord? {
        try await withConnection { try await $0.user(username: username, logger: logger) }
    }

    /// An organization by slug, outside any transaction.
    public func organization(slug: String) async throws -> OrganizationRecord? {
        try await withConnection { try await $0.organization(slug: slug, logger: logger) }
    }
}
