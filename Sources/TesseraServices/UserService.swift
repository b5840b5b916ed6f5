import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// Global identities (platform admins): create, disable, enable, delete, with the cascades of
/// DESIGN §5, one transaction and its audit events each.
public struct UserService: Sendable {
    let store: TesseraStore

    public init(store: TesseraStore) {
        self.store = store
    }

    /// A user by name, outside any transaction.
    public func user(named username: String) async throws -> UserRecord? {
        try await store.withConnection { [logger = store.logger] in
            try await $0.user(username: username, logger: logger)
        }
    }

    /// A user by name, or ``DomainError/notFound(_:)``.
    public func existing(_ username: String) async throws -> UserRecord {
        guard let user = try await user(named: username) else { throw DomainError.notFound("User not found") }
        return user
    }

    /// Creates a user; a taken name is a conflict.
    public func create(username: String, platformAdmin: Bool, by actor: AuditActor) async throws -> UserRecord {
        guard Validation.isValidUsername(username) else {
            throw DomainError.invalidField(
                "username", "must be 1-255 of A-Z a-z 0-9 ._@+- starting with a letter or digit")
        }
        let logger = store.logger
        let user = try await store.transaction { connection -> UserRecord? in
            if try await connection.user(username: username, logger: logger) != nil { return nil }
            _ = try await connection.upsertUser(username: username, platformAdmin: platformAdmin, logger: logger)
            try await connection.recordAudit(
                actor.event(orgID: nil, action: .userCreated, target: username), logger: logger)
            return try await connection.user(username: username, logger: logger)
        }
        guard let user else { throw DomainError.conflict("User \(username) already exists") }
        return user
    }

    /// Sets a user's status and platform-admin flag (nil: unchanged). Disabling revokes their
    /// personal tokens in every org (`owner_disabled`).
    public func update(_ user: UserRecord, status: UserStatus?, platformAdmin: Bool?, by actor: AuditActor)
        async throws
    {
        let logger = store.logger
        try await store.transaction { connection in
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
    public func delete(_ user: UserRecord, by actor: AuditActor) async throws {
        let logger = store.logger
        try await store.transaction { connection in
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
            userID: user.id, orgID: nil, reason: reason, logger: store.logger)
        for token in revoked {
            try await connection.recordAudit(
                actor.event(
                    orgID: token.orgID, action: .tokenRevoked, token: token.id, target: user.username,
                    details: ["reason": reason]),
                logger: store.logger)
        }
    }
}
