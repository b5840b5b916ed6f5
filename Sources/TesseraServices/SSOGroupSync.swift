import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// Memberships that follow the groups an SSO sign-in (or a JWT bearer) brings (DESIGN §12). For
/// every org with a group mapping (`adminGroup` or `userGroup`), at each sign-in:
/// - the member's groups this org knows (its mapping groups, its API group, its SCIM groups) are
///   set from the claim; other groups on the membership (given by hand) stay;
/// - a person in the claim's mapping groups who is not a member yet becomes one when just-in-time
///   membership is on (`TESSERA_OIDC_JIT=true`), the user record created when new;
/// - role and suspension are then settled as for a SCIM change (admin while in `adminGroup`,
///   suspended when in neither group).
/// One transaction; nothing is written when nothing changes.
public struct SSOGroupSync: Sendable {
    let store: TesseraStore
    let justInTime: Bool

    public init(store: TesseraStore, justInTime: Bool) {
        self.store = store
        self.justInTime = justInTime
    }

    /// Applies `groups` (the claim's values) for `username`; returns whether the user exists
    /// afterwards (a JIT sign-in may have created them).
    @discardableResult
    public func apply(username: String, groups: [String], actor: AuditActor, logger: Logger) async throws -> Bool {
        let claimed = Set(groups)
        return try await store.transaction { connection in
            let organizations = OrganizationRepository(connection, logger: logger)
            let users = UserRepository(connection, logger: logger)
            let members = MembershipRepository(connection, logger: logger)
            var user = try await users.find(username: username)
            // A disabled account's sign-in changes nothing (and is refused right after).
            if let user, user.status != .active { return true }
            let mapped = try await organizations.mapped(for: user?.id, groups: groups, justInTime: justInTime)
            for org in mapped {
                let mappingGroups = Set([org.adminGroup, org.userGroup].compactMap { $0 })
                let known = mappingGroups.union([org.apiGroup].compactMap { $0 }).union(
                    try await GroupRepository(connection, logger: logger).list(orgID: org.id).map(\.displayName))
                let current = try await user.asyncFlatMap { try await members.find(orgID: org.id, userID: $0.id) }
                if let current {
                    let wanted = Set(current.groups).subtracting(known).union(claimed.intersection(known))
                    guard wanted != Set(current.groups) else {
                        try await MembershipSettlement.settle(
                            connection, org: org, userIDs: [current.userID], actor: actor, logger: logger)
                        continue
                    }
                    try await members.put(
                        orgID: org.id, userID: current.userID, role: current.role, groups: wanted.sorted())
                    try await AuditRepository(connection, logger: logger).record(
                        actor.event(
                            orgID: org.id, action: .memberUpdated, target: username,
                            details: ["groups": wanted.sorted().joined(separator: ","), "source": "sso"]))
                    try await MembershipSettlement.settle(
                        connection, org: org, userIDs: [current.userID], actor: actor, logger: logger)
                } else if justInTime, !claimed.isDisjoint(with: mappingGroups) {
                    let userID: UUID
                    if let user {
                        userID = user.id
                    } else {
                        userID = try await users.upsert(username: username, platformAdmin: false)
                        user = try await users.find(username: username)
                    }
                    let wanted = claimed.intersection(known).sorted()
                    try await members.put(orgID: org.id, userID: userID, role: .member, groups: wanted)
                    try await AuditRepository(connection, logger: logger).record(
                        actor.event(
                            orgID: org.id, action: .memberAdded, target: username,
                            details: ["groups": wanted.joined(separator: ","), "source": "sso"]))
                    try await MembershipSettlement.settle(
                        connection, org: org, userIDs: [userID], actor: actor, logger: logger)
                }
            }
            return user != nil
        }
    }
}
