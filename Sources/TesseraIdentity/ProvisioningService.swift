import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraServices

/// SCIM provisioning of one organization (DESIGN §12): every request is one transaction that
/// reads under row locks (concurrent PATCHes of one user or group serialise, none is lost),
/// writes, settles roles and suspensions from the groups, and audits with actor kind `scim`.
public struct ProvisioningService: Sendable {
    let store: TesseraStore

    public init(store: TesseraStore) {
        self.store = store
    }

    /// A page of a list: `totalResults` and the resources from `startIndex` (1-based).
    public struct Page: Sendable {
        public var total: Int
        public var startIndex: Int
        public var resources: [JSONValue]
    }

    /// Where resources are (`https://host/scim/v2/<org>`), and who acts.
    public struct Request: Sendable {
        public var org: OrganizationRecord
        public var base: String
        public var actor: AuditActor
        public var logger: Logger

        public init(org: OrganizationRecord, base: String, actor: AuditActor, logger: Logger) {
            self.org = org
            self.base = base
            self.actor = actor
            self.logger = logger
        }
    }

    // MARK: - Users

    public func users(_ request: Request, filter: SCIMFilter?, startIndex: Int, count: Int) async throws -> Page {
        let logger = request.logger
        if filter == nil {
            // An IdP's import pages through every member: one page from the database at a time.
            return try await store.withConnection { connection in
                let members = MembershipRepository(connection, logger: logger)
                let total = try await members.count(orgID: request.org.id)
                let page =
                    count == 0
                    ? []
                    : try await members.list(
                        orgID: request.org.id, offset: max(startIndex, 1) - 1, limit: count)
                let groups = try await GroupRepository(connection, logger: logger).list(orgID: request.org.id)
                return Page(
                    total: total, startIndex: max(startIndex, 1),
                    resources: page.map { Self.user($0, groups: groups, base: request.base) })
            }
        }
        let id = filter?.equality(on: "id")
        if let id, UUID(uuidString: id) == nil { return Page(total: 0, startIndex: startIndex, resources: []) }
        let resources = try await store.withConnection { connection in
            let members = try await MembershipRepository(connection, logger: logger).list(
                orgID: request.org.id, userID: id.flatMap(UUID.init(uuidString:)),
                username: filter?.equality(on: "userName"), externalID: filter?.equality(on: "externalId"))
            let groups = try await GroupRepository(connection, logger: logger).list(orgID: request.org.id)
            return members.map { Self.user($0, groups: groups, base: request.base) }
        }
        return Self.page(resources.filter { filter?.matches($0) ?? true }, startIndex: startIndex, count: count)
    }

    public func user(_ request: Request, id: String) async throws -> JSONValue {
        try await store.withConnection { connection in
            try await Self.user(connection, request, id: id, forUpdate: false).json
        }
    }

    public func createUser(_ request: Request, resource: JSONValue) async throws -> JSONValue {
        let draft = try SCIMResource.userDraft(resource)
        let logger = request.logger
        return try await store.transaction { connection in
            let users = UserRepository(connection, logger: logger)
            let members = MembershipRepository(connection, logger: logger)
            let userID: UUID
            if let existing = try await users.find(username: draft.userName) {
                userID = existing.id
            } else {
                userID = try await users.upsert(username: draft.userName, platformAdmin: false)
            }
            try await Self.checkExternalID(connection, request, draft.scim.externalID, except: userID)
            guard try await members.insertProvisioned(orgID: request.org.id, userID: userID, draft.scim) else {
                throw SCIMError.uniqueness("User \(draft.userName) already exists in organization \(request.org.slug)")
            }
            try await AuditRepository(connection, logger: logger).record(
                request.actor.event(
                    orgID: request.org.id, action: .memberAdded, target: draft.userName,
                    details: ["role": "member", "source": "scim"]))
            try await MembershipSettlement.settle(
                connection, org: request.org, userIDs: [userID], actor: request.actor, logger: logger)
            return try await Self.user(connection, request, id: userID.uuidString, forUpdate: false).json
        }
    }

    public func replaceUser(_ request: Request, id: String, resource: JSONValue, ifMatch: String?) async throws
        -> JSONValue
    {
        let draft = try SCIMResource.userDraft(resource)
        return try await store.transaction { connection in
            let (member, _) = try await Self.user(connection, request, id: id, forUpdate: true)
            try Self.check(ifMatch, version: member.version)
            return try await Self.write(connection, request, member: member, draft: draft)
        }
    }

    public func patchUser(_ request: Request, id: String, patch: SCIMPatch, ifMatch: String?) async throws -> JSONValue
    {
        try await store.transaction { connection in
            let (member, current) = try await Self.user(connection, request, id: id, forUpdate: true)
            try Self.check(ifMatch, version: member.version)
            let patched = try patch.apply(to: current, readOnly: ["id", "meta", "groups", "schemas"])
            return try await Self.write(connection, request, member: member, draft: try SCIMResource.userDraft(patched))
        }
    }

    /// Removes the membership (`owner_left_org` for its personal tokens); the person's other
    /// organizations are untouched.
    public func deleteUser(_ request: Request, id: String) async throws {
        let logger = request.logger
        try await store.transaction { connection in
            let (member, _) = try await Self.user(connection, request, id: id, forUpdate: true)
            _ = try await MemberService.remove(
                connection, org: request.org, userID: member.userID, username: member.username, leaving: false,
                actor: request.actor, logger: logger)
        }
    }

    // MARK: - Groups

    public func groups(_ request: Request, filter: SCIMFilter?, startIndex: Int, count: Int, withMembers: Bool)
        async throws -> Page
    {
        let logger = request.logger
        let id = filter?.equality(on: "id")
        if let id, UUID(uuidString: id) == nil { return Page(total: 0, startIndex: startIndex, resources: []) }
        let resources = try await store.withConnection { connection in
            let repository = GroupRepository(connection, logger: logger)
            var resources: [JSONValue] = []
            for group in try await repository.list(
                orgID: request.org.id, id: id.flatMap(UUID.init(uuidString:)),
                displayName: filter?.equality(on: "displayName"), externalID: filter?.equality(on: "externalId"))
            {
                let members = withMembers || filter != nil ? try await repository.members(group) : []
                resources.append(SCIMResource.group(group, members: members, base: request.base))
            }
            return resources
        }
        return Self.page(resources.filter { filter?.matches($0) ?? true }, startIndex: startIndex, count: count)
    }

    public func group(_ request: Request, id: String) async throws -> JSONValue {
        try await store.withConnection { connection in
            try await Self.group(connection, request, id: id, forUpdate: false).json
        }
    }

    public func createGroup(_ request: Request, resource: JSONValue) async throws -> JSONValue {
        let draft = try SCIMResource.groupDraft(resource)
        let logger = request.logger
        return try await store.transaction { connection in
            let repository = GroupRepository(connection, logger: logger)
            try await Self.checkMembers(connection, request, draft.memberIDs)
            guard
                let group = try await repository.insert(
                    orgID: request.org.id, displayName: draft.displayName, externalID: draft.externalID)
            else { throw SCIMError.uniqueness("Group \(draft.displayName) already exists") }
            let changed = try await repository.addMembers(group, userIDs: draft.memberIDs)
            try await MembershipSettlement.settle(
                connection, org: request.org, userIDs: changed, actor: request.actor, logger: logger)
            try await AuditRepository(connection, logger: logger).record(
                request.actor.event(
                    orgID: request.org.id, action: .groupCreated,
                    details: [
                        "id": group.id.uuidString.lowercased(), "name": group.displayName,
                        "members": String(changed.count),
                    ]))
            return try await Self.group(connection, request, id: group.id.uuidString, forUpdate: false).json
        }
    }

    public func replaceGroup(_ request: Request, id: String, resource: JSONValue, ifMatch: String?) async throws
        -> JSONValue
    {
        let draft = try SCIMResource.groupDraft(resource)
        return try await store.transaction { connection in
            let (group, _) = try await Self.group(connection, request, id: id, forUpdate: true)
            try Self.check(ifMatch, version: group.version)
            return try await Self.write(connection, request, group: group, draft: draft)
        }
    }

    public func patchGroup(_ request: Request, id: String, patch: SCIMPatch, ifMatch: String?) async throws
        -> JSONValue
    {
        try await store.transaction { connection in
            let (group, current) = try await Self.group(connection, request, id: id, forUpdate: true)
            try Self.check(ifMatch, version: group.version)
            let patched = try patch.apply(to: current, readOnly: ["id", "meta", "schemas"])
            return try await Self.write(connection, request, group: group, draft: try SCIMResource.groupDraft(patched))
        }
    }

    /// Deletes the group: its name leaves every membership at once.
    public func deleteGroup(_ request: Request, id: String) async throws {
        let logger = request.logger
        try await store.transaction { connection in
            let (group, _) = try await Self.group(connection, request, id: id, forUpdate: true)
            let changed = try await GroupRepository(connection, logger: logger).delete(group)
            try await MembershipSettlement.settle(
                connection, org: request.org, userIDs: changed, actor: request.actor, logger: logger)
            try await AuditRepository(connection, logger: logger).record(
                request.actor.event(
                    orgID: request.org.id, action: .groupDeleted,
                    details: ["id": group.id.uuidString.lowercased(), "name": group.displayName]))
        }
    }
}

extension ProvisioningService {
    static func page(_ all: [JSONValue], startIndex: Int, count: Int) -> Page {
        let start = max(startIndex, 1)
        let slice = all.dropFirst(start - 1).prefix(max(count, 0))
        return Page(total: all.count, startIndex: start, resources: Array(slice))
    }

    static func user(_ member: MemberRecord, groups: [GroupRecord], base: String) -> JSONValue {
        let names = Set(member.groups)
        return SCIMResource.user(
            member, groups: groups.filter { names.contains($0.displayName) }.map { ($0.id, $0.displayName) },
            base: base)
    }

    static func user(_ connection: PostgresConnection, _ request: Request, id: String, forUpdate: Bool) async throws
        -> (member: MemberRecord, json: JSONValue)
    {
        guard let userID = UUID(uuidString: id),
            let member = try await MembershipRepository(connection, logger: request.logger).list(
                orgID: request.org.id, userID: userID, forUpdate: forUpdate
            ).first
        else { throw SCIMError.notFound("User \(id) not found") }
        let groups = try await GroupRepository(connection, logger: request.logger).list(orgID: request.org.id)
        return (member, user(member, groups: groups, base: request.base))
    }

    static func group(_ connection: PostgresConnection, _ request: Request, id: String, forUpdate: Bool) async throws
        -> (group: GroupRecord, json: JSONValue)
    {
        let repository = GroupRepository(connection, logger: request.logger)
        guard let groupID = UUID(uuidString: id),
            let group = try await repository.list(orgID: request.org.id, id: groupID, forUpdate: forUpdate).first
        else { throw SCIMError.notFound("Group \(id) not found") }
        return (group, SCIMResource.group(group, members: try await repository.members(group), base: request.base))
    }

    /// `If-Match` (RFC 7644 §3.14): `*`, or the resource's current ETag; else 412.
    static func check(_ ifMatch: String?, version: Int64) throws(SCIMError) {
        guard let ifMatch, ifMatch != "*" else { return }
        let tags = ifMatch.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let current = SCIMResource.etag(version)
        guard tags.contains(where: { $0 == current || "W/" + $0 == current }) else {
            throw SCIMError(status: 412, detail: "The resource changed since \(ifMatch) (now \(current))")
        }
    }

    static func checkExternalID(
        _ connection: PostgresConnection, _ request: Request, _ externalID: String?, except userID: UUID
    )
        async throws
    {
        guard let externalID else { return }
        let holders = try await MembershipRepository(connection, logger: request.logger).list(
            orgID: request.org.id, externalID: externalID)
        if holders.contains(where: { $0.userID != userID }) {
            throw SCIMError.uniqueness("externalId \(externalID) belongs to another user of this organization")
        }
    }

    static func checkMembers(_ connection: PostgresConnection, _ request: Request, _ ids: [UUID]) async throws {
        guard !ids.isEmpty else { return }
        let found = try await GroupRepository(connection, logger: request.logger).existingMembers(
            orgID: request.org.id, userIDs: ids)
        if let missing = ids.first(where: { !found.contains($0) }) {
            throw SCIMError.invalidValue("member \(missing.uuidString.lowercased()) is not a User of this organization")
        }
    }

    /// A PUT, or a PATCH's result: rename (only a person in no other org), attributes, settle.
    static func write(
        _ connection: PostgresConnection, _ request: Request, member: MemberRecord, draft: SCIMResource.UserDraft
    ) async throws -> JSONValue {
        let logger = request.logger
        let members = MembershipRepository(connection, logger: logger)
        if draft.userName != member.username {
            guard try await members.count(userID: member.userID) == 1 else {
                throw SCIMError.mutability(
                    "userName of \(member.username) cannot change: the person belongs to other organizations too")
            }
            guard try await UserRepository(connection, logger: logger).rename(id: member.userID, to: draft.userName)
            else { throw SCIMError.uniqueness("userName \(draft.userName) is taken") }
        }
        try await checkExternalID(connection, request, draft.scim.externalID, except: member.userID)
        try await members.updateProvisioned(orgID: request.org.id, userID: member.userID, draft.scim)
        var details = ["source": "scim", "active": String(draft.scim.active)]
        if draft.userName != member.username { details["renamedFrom"] = member.username }
        try await AuditRepository(connection, logger: logger).record(
            request.actor.event(orgID: request.org.id, action: .memberUpdated, target: draft.userName, details: details)
        )
        try await MembershipSettlement.settle(
            connection, org: request.org, userIDs: [member.userID], actor: request.actor, logger: logger)
        return try await user(connection, request, id: member.userID.uuidString, forUpdate: false).json
    }

    static func write(
        _ connection: PostgresConnection, _ request: Request, group: GroupRecord, draft: SCIMResource.GroupDraft
    ) async throws -> JSONValue {
        let logger = request.logger
        let repository = GroupRepository(connection, logger: logger)
        try await checkMembers(connection, request, draft.memberIDs)
        if draft.displayName.lowercased() != group.displayName.lowercased(),
            try await !repository.list(orgID: request.org.id, displayName: draft.displayName).isEmpty
        {
            throw SCIMError.uniqueness("Group \(draft.displayName) already exists")
        }
        try await repository.update(group, displayName: draft.displayName, externalID: draft.externalID)
        var renamed = group
        renamed.displayName = draft.displayName
        let current = Set(try await repository.members(renamed).map(\.id))
        let wanted = Set(draft.memberIDs)
        let removed = try await repository.removeMembers(renamed, userIDs: Array(current.subtracting(wanted)))
        let added = try await repository.addMembers(renamed, userIDs: draft.memberIDs.filter { !current.contains($0) })
        try await MembershipSettlement.settle(
            connection, org: request.org,
            userIDs: added + removed + (renamed.displayName != group.displayName ? Array(current) : []),
            actor: request.actor, logger: logger)
        var details = [
            "id": group.id.uuidString.lowercased(), "name": draft.displayName, "added": String(added.count),
            "removed": String(removed.count),
        ]
        if draft.displayName != group.displayName { details["renamedFrom"] = group.displayName }
        try await AuditRepository(connection, logger: logger).record(
            request.actor.event(orgID: request.org.id, action: .groupUpdated, details: details))
        return try await self.group(connection, request, id: group.id.uuidString, forUpdate: false).json
    }
}
