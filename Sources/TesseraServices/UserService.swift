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
            try await UserRepository($0, logger: logger).find(username: username)
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
            if try await UserRepository(connection, logger: logger).find(username: username) != nil { return nil }
            _ = try await UserRepository(connection, logger: logger).upsert(
                username: username, platformAdmin: platformAdmin)
            try await AuditRepository(connection, logger: logger).record(
                actor.event(orgID: nil, action: .userCreated, target: username))
            return try await UserRepository(connection, logger: logger).find(username: username)
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
            try await UserRepository(connection, logger: logger).set(
                id: user.id, status: status, platformAdmin: platformAdmin)
            try await AuditRepository(connection, logger: logger).record(
                actor.event(
                    orgID: nil, action: .userUpdated, target: user.username,
                    details: ["status": (status ?? user.status).rawValue]))
        }
    }

    /// Deletes a user after revoking their personal tokens everywhere (`owner_deleted`) and
    /// removing them from each organization (`member.removed` in its audit trail, and so to its
    /// webhooks, as if an admin had removed them); organization tokens they created stay.
    public func delete(_ user: UserRecord, by actor: AuditActor) async throws {
        let logger = store.logger
        try await store.transaction { connection in
            try await UserRepository(connection, logger: logger).lock(id: user.id)
            try await revokeEverywhere(connection, user, reason: "owner_deleted", by: actor)
            for orgID in try await MembershipRepository(connection, logger: logger).removeAll(userID: user.id) {
                try await AuditRepository(connection, logger: logger).record(
                    actor.event(
                        orgID: orgID, action: .memberRemoved, target: user.username, details: ["reason": "user_deleted"]
                    ))
            }
            try await UserRepository(connection, logger: logger).delete(id: user.id)
            try await AuditRepository(connection, logger: logger).record(
                actor.event(orgID: nil, action: .userDeleted, target: user.username))
        }
    }

    private func revokeEverywhere(
        _ connection: PostgresConnection, _ user: UserRecord, reason: String, by actor: AuditActor
    ) async throws {
        let revoked = try await TokenRepository(connection, logger: store.logger).revokePersonal(
            userID: user.id, orgID: nil, reason: reason)
        for token in revoked {
            try await AuditRepository(connection, logger: store.logger).record(
                actor.event(
                    orgID: token.orgID, action: .tokenRevoked, token: token.id, target: user.username,
                    details: ["reason": reason]))
        }
    }
}
