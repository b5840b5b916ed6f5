import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// Memberships with their cascades and audit events, each one transaction. The HTTP API, the
/// console and `tessera admin` all call these, so an operator at the database gets exactly the
/// cascade an admin gets over HTTP (DESIGN §5).
public struct MemberService: Sendable {
    let store: TesseraStore

    public init(store: TesseraStore) {
        self.store = store
    }

    /// The members of an organization.
    public func list(orgID: UUID, logger: Logger) async throws -> [MemberRecord] {
        try await store.withConnection { try await MembershipRepository($0, logger: logger).list(orgID: orgID) }
    }

    /// Adds `username` to the org (creating the user record when new) or changes their role and
    /// groups; nil keeps what is there (a new member defaults to `member`, no groups). A demotion
    /// takes effect on the member's very next request: roles are read live, never from the token.
    public func put(
        orgID: UUID, username: String, role: MembershipRole?, groups: [String]?, by actor: AuditActor
    ) async throws -> (member: MemberRecord, added: Bool) {
        guard Validation.isValidUsername(username) else {
            throw DomainError.invalidField(
                "username", "must be 1-255 of A-Z a-z 0-9 ._@+- starting with a letter or digit")
        }
        try Limits.checkGroups(groups ?? [])
        let logger = store.logger
        return try await store.transaction { connection in
            let userID = try await UserRepository(connection, logger: logger).upsert(
                username: username, platformAdmin: false)
            let existing = try await MembershipRepository(connection, logger: logger).find(orgID: orgID, userID: userID)
            let newRole = role ?? existing?.role ?? .member
            try await MembershipRepository(connection, logger: logger).put(
                orgID: orgID, userID: userID, role: newRole, groups: groups ?? existing?.groups ?? [])
            try await AuditRepository(connection, logger: logger).record(
                actor.event(
                    orgID: orgID, action: existing == nil ? .memberAdded : .memberUpdated, target: username,
                    details: ["role": newRole.rawValue]))
            // With the org's group mapping on, the groups decide the role (and a suspension).
            if let org = try await OrganizationRepository(connection, logger: logger).find(id: orgID),
                org.adminGroup != nil || org.userGroup != nil
            {
                try await MembershipSettlement.settle(
                    connection, org: org, userIDs: [userID], actor: actor, logger: logger)
            }
            guard
                let member = try await MembershipRepository(connection, logger: logger).find(
                    orgID: orgID, userID: userID)
            else {
                throw StoreError.noRows
            }
            return (member, existing == nil)
        }
    }

    /// Removes a membership (an admin removes, or the member leaves); their personal tokens in
    /// this org are revoked first (`owner_left_org`). Org tokens they created live on.
    /// Not a member: ``DomainError/notFound(_:)``.
    public func remove(org: OrganizationRecord, username: String, leaving: Bool, by actor: AuditActor) async throws {
        let logger = store.logger
        let removed = try await store.transaction { connection -> Bool in
            guard let user = try await UserRepository(connection, logger: logger).find(username: username) else {
                return false
            }
            return try await Self.remove(
                connection, org: org, userID: user.id, username: username, leaving: leaving, actor: actor,
                logger: logger)
        }
        guard removed else {
            throw DomainError.notFound("User \(username) is not a member of organization \(org.slug)")
        }
    }

    /// The number of live personal tokens a removal would revoke (the console's confirmation).
    /// Not a member: ``DomainError/notFound(_:)``.
    public func liveTokensAtStake(org: OrganizationRecord, username: String, logger: Logger) async throws -> Int {
        try await store.withConnection { connection in
            guard let target = try await UserRepository(connection, logger: logger).find(username: username),
                try await MembershipRepository(connection, logger: logger).find(orgID: org.id, userID: target.id) != nil
            else { throw DomainError.notFound("\(username) is not a member of \(org.slug)") }
            let page = try await TokenRepository(connection, logger: logger).list(
                orgID: org.id, visibleTo: target.id, all: false,
                query: TokenQuery(limit: 1000, kind: .personal, status: .active))
            return page.records.count
        }
    }

    /// Removes the membership inside the caller's transaction: personal tokens revoked
    /// (`owner_left_org`, each audited), then `member.removed` (or `member.left`). False when there
    /// was no membership.
    public static func remove(
        _ connection: PostgresConnection, org: OrganizationRecord, userID: UUID, username: String, leaving: Bool,
        actor: AuditActor, logger: Logger
    ) async throws -> Bool {
        guard
            let revoked = try await MembershipRepository(connection, logger: logger).remove(
                orgID: org.id, userID: userID)
        else { return false }
        let audit = AuditRepository(connection, logger: logger)
        try await audit.record(
            actor.event(
                orgID: org.id, action: .tokenRevoked, target: username, details: ["reason": "owner_left_org"]),
            forEachOf: revoked)
        try await audit.record(
            actor.event(orgID: org.id, action: leaving ? .memberLeft : .memberRemoved, target: username))
        return true
    }
}
