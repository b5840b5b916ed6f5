import Foundation
import Hummingbird
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices

/// `/orgs`, `/orgs/{org}` and `/orgs/{org}/members` (DESIGN §4.2): decode, call
/// ``OrganizationService`` or ``MemberService``, encode.
struct OrganizationController {
    let organizations: OrganizationService
    let members: MemberService
    let resolver: CallerResolver

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post(use: create)
        group.get(use: list)
        group.get(":org", use: get)
        group.patch(":org", use: update)
        group.delete(":org", use: delete)
        group.get(":org/members", use: listMembers)
        group.put(":org/members/:username", use: putMember)
        group.delete(":org/members/:username", use: removeMember)
    }

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<
        OrganizationInfo
    > {
        let actor = try await resolver.platformAdmin(request, context: context)
        let body = try await request.decodeJSON(OrganizationCreateRequest.self, context: context)
        let created = try await organizations.create(
            slug: body.slug, displayName: body.displayName, by: actor.auditActor(context))
        return EditedResponse(
            status: .created,
            response: OrganizationInfo(try await organizations.details(created.id, logger: context.logger)))
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> OrganizationList {
        let platform = try? await resolver.platformAdmin(request, context: context)
        let (caller, _) = try await resolver.resolve(request, context: context, orgSlug: nil)
        let all = try await organizations.list(all: platform != nil, caller: caller, logger: context.logger)
        return OrganizationList(organizations: all.map(OrganizationInfo.init))
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> OrganizationInfo {
        let (caller, _) = try await resolve(request, context, scope: "org:read", admin: false)
        return OrganizationInfo(try await organizations.details(caller.orgID, logger: context.logger))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> OrganizationInfo {
        let (caller, org) = try await resolve(request, context, scope: "org:admin", admin: true)
        let body = try await request.decodeJSON(
            MergePatch.self, context: context,
            nullable: ["maxTokenLifetimeDays", "idleTimeoutDays", "apiGroup", "adminGroup", "userGroup"])
        var patch = OrganizationPatch()
        do {
            patch.displayName = try body.value("displayName")
            patch.defaultTokenLifetimeDays = try body.value("defaultTokenLifetimeDays")
            patch.maxTokenLifetimeDays = try body.nullable("maxTokenLifetimeDays")
            patch.allowNonExpiringTokens = try body.value("allowNonExpiringTokens")
            patch.idleTimeoutDays = try body.nullable("idleTimeoutDays")
            patch.apiGroup = try body.nullable("apiGroup")
            patch.adminGroup = try body.nullable("adminGroup")
            patch.userGroup = try body.nullable("userGroup")
            patch.userTokensEnabled = try body.value("userTokensEnabled")
            patch.defaultScopes = try body.value("defaultScopes")
            patch.scopes = try body.value("scopes")
            patch.personalTokenLimit = try body.value("personalTokenLimit")
        } catch let error as DecodingError {
            throw Problem.unprocessable(error)
        }
        try await organizations.applyPolicy(patch, org: org, actor: caller.auditActor(context), logger: context.logger)
        return OrganizationInfo(try await organizations.details(org.id, logger: context.logger))
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let (caller, org) = try await resolve(request, context, scope: "org:admin", admin: true)
        try await organizations.delete(org, actor: caller.auditActor(context), logger: context.logger)
        return Message(message: "Organization deleted successfully")
    }

    @Sendable func listMembers(_ request: Request, context: TesseraRequestContext) async throws -> MemberList {
        let (caller, _) = try await resolve(request, context, scope: "org:read", admin: false)
        return MemberList(
            members: try await members.list(orgID: caller.orgID, logger: context.logger).map(MemberInfo.init))
    }

    /// Absent keys keep what is there; an explicit `null` is refused by `decodeJSON` (422).
    struct MemberRequest: Decodable {
        var role: MembershipRole?
        var groups: [String]?
    }

    /// Adds or updates a member (creating the user record if new).
    @Sendable func putMember(_ request: Request, context: TesseraRequestContext) async throws -> MemberInfo {
        let (caller, org) = try await resolve(request, context, scope: "org:admin", admin: true)
        let username = try context.parameters.require("username")
        guard Validation.isValidUsername(username) else {
            throw Problem(.badRequest, "Username \(username) is invalid")
        }
        let body = try await request.decodeJSON(MemberRequest.self, context: context)
        let (member, _) = try await members.put(
            orgID: org.id, username: username, role: body.role, groups: body.groups, by: caller.auditActor(context))
        return MemberInfo(member)
    }

    /// An admin removes a member, or a member leaves.
    @Sendable func removeMember(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let username = try context.parameters.require("username")
        let (caller, org) = try await resolver.resolve(
            request, context: context, orgSlug: context.parameters.get("org"))
        let leaving = caller.username == username && caller.userID != nil
        if !leaving {
            _ = try await resolve(request, context, scope: "org:admin", admin: true)
        }
        try await members.remove(org: org, username: username, leaving: leaving, by: caller.auditActor(context))
        return Message(message: "Member removed successfully")
    }

    /// Resolves the org of the path and checks the scope (and admin power when asked).
    func resolve(_ request: Request, _ context: TesseraRequestContext, scope: String, admin: Bool) async throws
        -> (Caller, OrganizationRecord)
    {
        try await resolver.resolve(request, context, scope: scope, admin: admin)
    }
}
