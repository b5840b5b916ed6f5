import Foundation
import HTTPTypes
import Hummingbird
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraVerification

/// Turns an identity plus the org named by the route (or `X-Tessera-Org`) into a ``Caller``,
/// applying the tenancy rule: a token acts only in its own org, except a platform admin's token
/// holding `platform:admin`; a JWT user acts in orgs they belong to (any org for platform admins).
package struct CallerResolver: Sendable {
    let store: TesseraStore

    static let notFound = Problem(.notFound, "Organization not found")

    package func resolve(_ request: Request, context: TesseraRequestContext, orgSlug pathSlug: String?) async throws
        -> (Caller, OrganizationRecord)
    {
        guard let identity = context.identity else { throw Problem.unauthenticated("Missing credential") }
        let logger = context.logger
        return try await store.withConnection { connection in
            switch identity {
            case .token(let token):
                if pathSlug == nil || pathSlug == token.orgSlug {
                    guard
                        let org = try await OrganizationRepository(connection, logger: logger).find(
                            id: token.orgID, mode: store.statements)
                    else {
                        throw Self.notFound
                    }
                    return (Self.caller(token: token, org: org, role: token.role, groups: token.groups), org)
                }
                let platformScope = ScopeCatalog.builtIn.expand(token.scopes).contains("platform:admin")
                guard token.kind == .personal, token.platformAdmin, platformScope, let pathSlug,
                    let org = try await OrganizationRepository(connection, logger: logger).find(slug: pathSlug)
                else { throw Self.notFound }
                let membership = try await token.ownerUserID.asyncFlatMap {
                    try await MembershipRepository(connection, logger: logger).acting(orgID: org.id, userID: $0)
                }
                return (
                    Self.caller(token: token, org: org, role: membership?.role, groups: membership?.groups ?? []), org
                )

            case .jwt(let username):
                guard let user = try await UserRepository(connection, logger: logger).find(username: username),
                    user.status == .active
                else { throw Problem.invalidToken(.ownerInactive) }
                let requested = pathSlug ?? request.headers[.tesseraOrg]
                let org: OrganizationRecord
                if let requested {
                    guard let found = try await OrganizationRepository(connection, logger: logger).find(slug: requested)
                    else {
                        throw Self.notFound
                    }
                    org = found
                } else {
                    let orgs = try await OrganizationRepository(connection, logger: logger).list(memberUserID: user.id)
                    guard orgs.count == 1 else {
                        throw Problem(
                            .badRequest,
                            orgs.isEmpty
                                ? "You are not a member of any organization"
                                : "You belong to \(orgs.count) organizations: send X-Tessera-Org: <slug>")
                    }
                    org = orgs[0]
                }
                let membership = try await MembershipRepository(connection, logger: logger).acting(
                    orgID: org.id, userID: user.id)
                guard membership != nil || user.platformAdmin else { throw Self.notFound }
                let caller = Caller(
                    credential: .jwt, userID: user.id, username: user.username, platformAdmin: user.platformAdmin,
                    orgID: org.id, orgSlug: org.slug, role: membership?.role, groups: membership?.groups ?? [])
                return (caller, org)
            }
        }
    }

    /// The caller and the route's org, holding `scope` (`org:read` is implied for admins) and, when
    /// `admin`, an admin of the org: what every `/orgs/{org}/…` route checks.
    package func resolve(_ request: Request, _ context: TesseraRequestContext, scope: String, admin: Bool)
        async throws -> (Caller, OrganizationRecord)
    {
        let (caller, org) = try await resolve(request, context: context, orgSlug: context.parameters.get("org"))
        let isAdmin = caller.isAdmin(catalog: .builtIn)
        guard caller.holds(scope, catalog: .builtIn) || (scope == "org:read" && isAdmin) else {
            throw Problem(.forbidden, "This token lacks the \(scope) scope")
        }
        if admin && !isAdmin {
            throw Problem(.forbidden, "Only organization admins can do this")
        }
        return (caller, org)
    }

    static func caller(token: VerifiedToken, org: OrganizationRecord, role: MembershipRole?, groups: [String]) -> Caller
    {
        Caller(
            credential: .token(token), userID: token.ownerUserID, username: token.username,
            platformAdmin: token.platformAdmin, orgID: org.id, orgSlug: org.slug, role: role, groups: groups)
    }
}

extension Caller {
    /// An audit event of this caller in its acting org, from the request's peer address.
    package func auditActor(_ context: TesseraRequestContext) -> AuditActor {
        AuditActor(
            username: username, kind: token == nil ? .jwt : .token, tokenID: token?.tokenID,
            sourceIP: context.remoteAddress)
    }

    package func auditEvent(
        _ context: TesseraRequestContext, action: AuditAction, token: UUID? = nil, target: String? = nil,
        details: [String: String] = [:]
    ) -> AuditEvent {
        auditActor(context).event(orgID: orgID, action: action, token: token, target: target, details: details)
    }
}
