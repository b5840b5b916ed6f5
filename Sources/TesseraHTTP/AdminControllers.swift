import Foundation
import Hummingbird
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// Wire form of an organization: policy and scope catalog (DESIGN §2).
struct OrganizationInfo: ResponseEncodable {
    let record: OrganizationRecord
    let scopes: [ScopeCatalog.Entry]

    enum Key: String, CodingKey {
        case slug, displayName, defaultTokenLifetimeDays, maxTokenLifetimeDays, allowNonExpiringTokens, idleTimeoutDays
        case apiGroup, userTokensEnabled, defaultScopes, scopes, personalTokenLimit, createdDate, updatedDate
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(record.slug, forKey: .slug)
        try c.encode(record.displayName, forKey: .displayName)
        try c.encode(record.defaultTokenLifetimeDays, forKey: .defaultTokenLifetimeDays)
        try c.encode(record.maxTokenLifetimeDays, forKey: .maxTokenLifetimeDays)
        try c.encode(record.allowNonExpiringTokens, forKey: .allowNonExpiringTokens)
        try c.encode(record.idleTimeoutDays, forKey: .idleTimeoutDays)
        try c.encode(record.apiGroup, forKey: .apiGroup)
        try c.encode(record.userTokensEnabled, forKey: .userTokensEnabled)
        try c.encode(record.defaultScopes, forKey: .defaultScopes)
        try c.encode(record.personalTokenLimit, forKey: .personalTokenLimit)
        try c.encode(scopes, forKey: .scopes)
        try c.encode(Int64(record.createdAt.timeIntervalSince1970), forKey: .createdDate)
        try c.encode(Int64(record.updatedAt.timeIntervalSince1970), forKey: .updatedDate)
    }
}

struct MemberInfo: ResponseEncodable {
    let username: String
    let role: String
    let groups: [String]
    let status: String
    let createdDate: Int64

    init(_ member: MemberRecord) {
        username = member.username
        role = member.role.rawValue
        groups = member.groups
        status = member.userStatus.rawValue
        createdDate = Int64(member.createdAt.timeIntervalSince1970)
    }
}

struct UserInfo: ResponseEncodable {
    let username: String
    let status: String
    let platformAdmin: Bool
    let createdDate: Int64

    init(_ user: UserRecord) {
        username = user.username
        status = user.status.rawValue
        platformAdmin = user.platformAdmin
        createdDate = Int64(user.createdAt.timeIntervalSince1970)
    }
}

struct Message: ResponseEncodable {
    let message: String
}

/// Decodes an object keeping the difference between an absent key and `null` (RFC 7396).
struct MergePatch: Decodable {
    let container: KeyedDecodingContainer<AnyCodingKey>

    init(from decoder: any Decoder) throws {
        container = try decoder.container(keyedBy: AnyCodingKey.self)
    }

    /// nil when absent; an explicit `null` for a field that cannot be null is a 422.
    func value<T: Decodable>(_ key: String, as type: T.Type = T.self) throws -> T? {
        let codingKey = AnyCodingKey(key)
        guard container.contains(codingKey) else { return nil }
        return try decode(T.self, codingKey)
    }

    /// nil: absent; `.some(nil)`: explicit null; `.some(value)`.
    func nullable<T: Decodable>(_ key: String, as type: T.Type = T.self) throws -> T?? {
        let codingKey = AnyCodingKey(key)
        guard container.contains(codingKey) else { return nil }
        if try container.decodeNil(forKey: codingKey) { return .some(nil) }
        return .some(try decode(T.self, codingKey))
    }

    /// Decoding happens here, after the body was read: Foundation's own errors (a number no
    /// Swift type holds) become the DecodingError a 422 is made of, never a 500.
    private func decode<T: Decodable>(_ type: T.Type, _ key: AnyCodingKey) throws -> T {
        do {
            return try container.decode(T.self, forKey: key)
        } catch let error as DecodingError {
            throw error
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [key], debugDescription: "not representable"))
        }
    }
}

/// `/orgs`, `/orgs/{org}` and `/orgs/{org}/members` (DESIGN §4.2).
struct OrganizationController {
    let store: TesseraStore
    let resolver: CallerResolver

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post(use: create)
        group.get(use: list)
        group.get(":org", use: get)
        group.patch(":org", use: update)
        group.delete(":org", use: delete)
        group.get(":org/members", use: members)
        group.put(":org/members/:username", use: putMember)
        group.delete(":org/members/:username", use: removeMember)
    }

    struct CreateRequest: Decodable {
        var slug: String
        var displayName: String?
    }

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<
        OrganizationInfo
    > {
        let actor = try await resolver.platformAdmin(request, context: context)
        let body = try await request.decodeJSON(CreateRequest.self, context: context)
        guard Validation.isValidSlug(body.slug) else {
            throw Problem.invalidField("slug", "must match [a-z0-9][a-z0-9-]{1,62}")
        }
        let displayName = body.displayName ?? body.slug
        try Limits.checkName(displayName, field: "displayName")
        do {
            let created = try await store.createOrganization(
                slug: body.slug, displayName: displayName, by: actor.auditActor(context))
            return EditedResponse(
                status: .created,
                response: OrganizationInfo(
                    record: created,
                    scopes: try await store.withConnection {
                        try await $0.scopeCatalog(orgID: created.id, logger: context.logger)
                    }))
        } catch let error as PSQLError where error.isUniqueViolation {
            throw Problem(.conflict, "Organization \(body.slug) already exists")
        }
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> [String: [OrganizationInfo]]
    {
        let platform = try? await resolver.platformAdmin(request, context: context)
        let (caller, _) = try await resolver.resolve(request, context: context, orgSlug: nil)
        let infos = try await store.withConnection { connection in
            let records: [OrganizationRecord]
            if platform != nil {
                records = try await connection.organizations(memberUserID: nil, logger: context.logger)
            } else if caller.token != nil {
                records = try await connection.organization(id: caller.orgID, logger: context.logger).map { [$0] } ?? []
            } else {
                records = try await connection.organizations(memberUserID: caller.userID, logger: context.logger)
            }
            var infos: [OrganizationInfo] = []
            for record in records { infos.append(try await info(connection, id: record.id, context)) }
            return infos
        }
        return ["organizations": infos]
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> OrganizationInfo {
        let (caller, _) = try await resolve(request, context, scope: "org:read", admin: false)
        return try await store.withConnection { try await info($0, id: caller.orgID, context) }
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> OrganizationInfo {
        let (caller, org) = try await resolve(request, context, scope: "org:admin", admin: true)
        let body = try await request.decodeJSON(
            MergePatch.self, context: context, nullable: ["maxTokenLifetimeDays", "idleTimeoutDays", "apiGroup"])
        var patch = OrganizationPatch()
        do {
            patch.displayName = try body.value("displayName")
            patch.defaultTokenLifetimeDays = try body.value("defaultTokenLifetimeDays")
            patch.maxTokenLifetimeDays = try body.nullable("maxTokenLifetimeDays")
            patch.allowNonExpiringTokens = try body.value("allowNonExpiringTokens")
            patch.idleTimeoutDays = try body.nullable("idleTimeoutDays")
            patch.apiGroup = try body.nullable("apiGroup")
            patch.userTokensEnabled = try body.value("userTokensEnabled")
            patch.defaultScopes = try body.value("defaultScopes")
            patch.scopes = try body.value("scopes")
            patch.personalTokenLimit = try body.value("personalTokenLimit")
        } catch let error as DecodingError {
            throw Problem.unprocessable(error)
        }
        try await Self.applyPolicy(
            patch, org: org, store: store, actor: caller.auditActor(context), logger: context.logger)
        return try await store.withConnection { try await info($0, id: org.id, context) }
    }

    /// Validates and applies a policy change in one transaction with its audit event: the same
    /// code for `PATCH /orgs/{org}` and the console's Policy page.
    static func applyPolicy(
        _ patch: OrganizationPatch, org: OrganizationRecord, store: TesseraStore, actor: AuditActor, logger: Logger
    ) async throws {
        try validate(patch)
        do {
            try await store.transaction { connection in
                _ = try await connection.updateOrganization(id: org.id, patch: patch, logger: logger)
                let catalog = ScopeCatalog(try await connection.scopeCatalog(orgID: org.id, logger: logger))
                for scope in patch.defaultScopes ?? [] where catalog.entries[scope] == nil {
                    throw Problem(
                        .badRequest, "Unknown scope: \(scope) is not in the catalog of organization \(org.slug)")
                }
                try await connection.recordAudit(actor.event(orgID: org.id, action: .orgPolicyUpdated), logger: logger)
            }
        } catch let error as PSQLError where error.isCheckViolation {
            let reason =
                error.constraintName == "default_lifetime_within_max"
                ? "defaultTokenLifetimeDays must not exceed maxTokenLifetimeDays" : "a value is out of range"
            throw Problem(.badRequest, "Invalid policy: \(reason)")
        }
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let (caller, org) = try await resolve(request, context, scope: "org:admin", admin: true)
        try await store.transaction { connection in
            _ = try await connection.deleteOrganization(id: org.id, logger: context.logger)
            try await connection.recordAudit(
                caller.auditEvent(context, action: .orgDeleted, details: ["slug": org.slug]), logger: context.logger)
        }
        return Message(message: "Organization deleted successfully")
    }

    @Sendable func members(_ request: Request, context: TesseraRequestContext) async throws -> [String: [MemberInfo]] {
        let (caller, _) = try await resolve(request, context, scope: "org:read", admin: false)
        let members = try await store.withConnection {
            try await $0.members(orgID: caller.orgID, logger: context.logger)
        }
        return ["members": members.map(MemberInfo.init)]
    }

    /// Absent keys keep what is there; an explicit `null` is refused by `decodeJSON` (422).
    struct MemberRequest: Decodable {
        var role: MembershipRole?
        var groups: [String]?
    }

    /// Adds or updates a member (creating the user record if new). A demotion takes effect on
    /// the member's very next request: roles are read live, never from the token.
    @Sendable func putMember(_ request: Request, context: TesseraRequestContext) async throws -> MemberInfo {
        let (caller, org) = try await resolve(request, context, scope: "org:admin", admin: true)
        let username = try context.parameters.require("username")
        guard Validation.isValidUsername(username) else {
            throw Problem(.badRequest, "Username \(username) is invalid")
        }
        let body = try await request.decodeJSON(MemberRequest.self, context: context)
        try Limits.checkGroups(body.groups ?? [])
        let (member, _) = try await store.putMember(
            orgID: org.id, username: username, role: body.role, groups: body.groups, by: caller.auditActor(context))
        return MemberInfo(member)
    }

    /// An admin removes a member, or a member leaves; their personal tokens in this org are
    /// revoked (`owner_left_org`) in the same transaction. Org tokens they created live on.
    @Sendable func removeMember(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let username = try context.parameters.require("username")
        let (caller, org) = try await resolver.resolve(
            request, context: context, orgSlug: context.parameters.get("org"))
        let leaving = caller.username == username && caller.userID != nil
        if !leaving {
            _ = try await resolve(request, context, scope: "org:admin", admin: true)
        }
        let removed = try await store.removeMember(
            orgID: org.id, username: username, leaving: leaving, by: caller.auditActor(context))
        guard removed else { throw Problem(.notFound, "User \(username) is not a member of organization \(org.slug)") }
        return Message(message: "Member removed successfully")
    }

    // MARK: - Helpers

    /// Resolves the org of the path and checks the scope (and admin power when asked).
    func resolve(_ request: Request, _ context: TesseraRequestContext, scope: String, admin: Bool) async throws
        -> (Caller, OrganizationRecord)
    {
        let (caller, org) = try await resolver.resolve(
            request, context: context, orgSlug: context.parameters.get("org"))
        let isAdmin = caller.isAdmin(catalog: .builtIn)
        guard caller.holds(scope, catalog: .builtIn) || (scope == "org:read" && isAdmin) else {
            throw Problem(.forbidden, "This token lacks the \(scope) scope")
        }
        if admin && !isAdmin {
            throw Problem(.forbidden, "Only organization admins can do this")
        }
        return (caller, org)
    }

    func info(_ connection: PostgresConnection, id: UUID, _ context: TesseraRequestContext) async throws
        -> OrganizationInfo
    {
        guard let record = try await connection.organization(id: id, logger: context.logger) else {
            throw CallerResolver.notFound
        }
        return OrganizationInfo(
            record: record, scopes: try await connection.scopeCatalog(orgID: id, logger: context.logger))
    }

    static func validate(_ patch: OrganizationPatch) throws {
        if let name = patch.displayName { try Limits.checkName(name, field: "displayName") }
        if let group = patch.apiGroup ?? nil { try Limits.checkName(group, field: "apiGroup") }
        for scope in patch.scopes ?? [] {
            do { try Limits.checkDescription(scope.description) } catch {
                throw Problem.invalidField(
                    "scopes", "description of \(scope.name) must be at most 1000 characters, without control characters"
                )
            }
        }
        for (field, value) in [
            ("defaultTokenLifetimeDays", patch.defaultTokenLifetimeDays),
            ("maxTokenLifetimeDays", patch.maxTokenLifetimeDays ?? nil),
            ("idleTimeoutDays", patch.idleTimeoutDays ?? nil),
        ] {
            if let value, !(1...36500).contains(value) {
                throw Problem.invalidField(field, "must be between 1 and 36500")
            }
        }
        if let limit = patch.personalTokenLimit, !(1...1000).contains(limit) {
            throw Problem.invalidField("personalTokenLimit", "must be between 1 and 1000")
        }
        for scope in patch.scopes ?? [] where !Validation.isValidScopeName(scope.name) {
            throw Problem.invalidField("scopes", "name \(scope.name) must match [a-z][a-z0-9_.:-]{0,63}")
        }
    }
}

/// `/users` (platform admins): create, get, disable, delete, with the cascades of DESIGN §5.
struct UserController {
    let store: TesseraStore
    let resolver: CallerResolver

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post(use: create)
        group.get(":username", use: get)
        group.patch(":username", use: update)
        group.delete(":username", use: delete)
    }

    struct CreateRequest: Decodable {
        var username: String
        var platformAdmin: Bool?
    }

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<UserInfo> {
        let actor = try await resolver.platformAdmin(request, context: context)
        let body = try await request.decodeJSON(CreateRequest.self, context: context)
        guard Validation.isValidUsername(body.username) else {
            throw Problem.invalidField("username", "must be 1-255 of A-Z a-z 0-9 ._@+- starting with a letter or digit")
        }
        let user = try await store.transaction { connection -> UserRecord? in
            if try await connection.user(username: body.username, logger: context.logger) != nil { return nil }
            _ = try await connection.upsertUser(
                username: body.username, platformAdmin: body.platformAdmin ?? false, logger: context.logger)
            try await connection.recordAudit(
                AuditEvent(
                    orgID: nil, actorUsername: actor.username, actorKind: actor.kind, action: .userCreated,
                    targetUsername: body.username, sourceIP: context.remoteAddress),
                logger: context.logger)
            return try await connection.user(username: body.username, logger: context.logger)
        }
        guard let user else { throw Problem(.conflict, "User \(body.username) already exists") }
        return EditedResponse(status: .created, response: UserInfo(user))
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> UserInfo {
        _ = try await resolver.platformAdmin(request, context: context)
        return UserInfo(try await user(context))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> UserInfo {
        let actor = try await resolver.platformAdmin(request, context: context)
        let body = try await request.decodeJSON(MergePatch.self, context: context)
        let statusText: String?
        let platformAdmin: Bool?
        do {
            statusText = try body.value("status")
            platformAdmin = try body.value("platformAdmin")
        } catch let error as DecodingError {
            throw Problem.unprocessable(error)
        }
        let status = statusText.flatMap(UserStatus.init(rawValue:))
        if statusText != nil && status == nil {
            throw Problem.invalidField("status", "must be active or disabled")
        }
        let target = try await user(context)
        try await store.updateUser(target, status: status, platformAdmin: platformAdmin, by: actor.auditActor(context))
        return UserInfo(try await user(context))
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let actor = try await resolver.platformAdmin(request, context: context)
        let target = try await user(context)
        try await store.deleteUser(target, by: actor.auditActor(context))
        return Message(message: "User deleted successfully")
    }

    func user(_ context: TesseraRequestContext) async throws -> UserRecord {
        let username = try context.parameters.require("username")
        guard
            let user = try await store.withConnection({ try await $0.user(username: username, logger: context.logger) })
        else {
            throw Problem(.notFound, "User not found")
        }
        return user
    }
}

/// A caller allowed on the platform routes.
struct PlatformActor: Sendable {
    let username: String
    let kind: AuditActorKind

    func auditActor(_ context: TesseraRequestContext) -> AuditActor {
        AuditActor(username: username, kind: kind, sourceIP: context.remoteAddress)
    }
}

extension CallerResolver {
    /// Platform routes: a platform admin's personal token holding `platform:admin`, or a JWT of
    /// an active platform admin. Anyone else gets 403.
    func platformAdmin(_ request: Request, context: TesseraRequestContext) async throws -> PlatformActor {
        switch context.identity {
        case .token(let token):
            guard token.kind == .personal, token.platformAdmin,
                ScopeCatalog.builtIn.expand(token.scopes).contains("platform:admin")
            else { throw Problem(.forbidden, "Only platform admins can do this") }
            return PlatformActor(username: token.username, kind: .token)
        case .jwt(let username):
            let user = try await store.withConnection { try await $0.user(username: username, logger: context.logger) }
            guard let user, user.status == .active, user.platformAdmin else {
                throw Problem(.forbidden, "Only platform admins can do this")
            }
            return PlatformActor(username: username, kind: .jwt)
        case nil:
            throw Problem.unauthenticated("Missing credential")
        }
    }
}
