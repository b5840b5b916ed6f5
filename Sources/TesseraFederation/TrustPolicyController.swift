import Foundation
import Hummingbird
import TesseraAPI
import TesseraCore
import TesseraHTTP

extension TrustPolicyInfo: ResponseEncodable {}
extension TrustPolicyList: ResponseEncodable {}
extension TrustPolicyDeleted: ResponseEncodable {}

extension TrustPolicyInfo {
    package init(_ listed: TrustPolicyService.Listed) {
        let policy = listed.policy
        self.init(
            id: policy.id.uuidString.lowercased(), name: policy.name, issuer: policy.issuer, audience: policy.audience,
            conditions: policy.conditions.patterns, scopes: policy.scopes,
            maxLifetimeSeconds: policy.maxLifetimeSeconds, label: policy.label, createdDate: epoch(policy.createdAt),
            updatedDate: epoch(policy.updatedAt), createdBy: policy.createdBy, liveTokens: listed.liveTokens)
    }
}

/// `/orgs/{org}/trust-policies` (DESIGN §13): org admins only, answers and errors as the REST
/// API's (problem+json).
struct TrustPolicyController {
    let policies: TrustPolicyService
    let resolver: CallerResolver

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post(":org/trust-policies", use: create)
        group.get(":org/trust-policies", use: list)
        group.get(":org/trust-policies/:policy", use: get)
        group.patch(":org/trust-policies/:policy", use: update)
        group.delete(":org/trust-policies/:policy", use: delete)
    }

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<
        TrustPolicyInfo
    > {
        let (caller, org) = try await admin(request, context)
        let body = try await request.decodeJSON(TrustPolicyCreateRequest.self, context: context)
        let record = try await policies.create(
            .init(
                name: body.name, issuer: body.issuer, audience: body.audience, conditions: body.conditions,
                scopes: body.scopes, maxLifetimeSeconds: body.maxLifetimeSeconds, label: body.label),
            org: org, actor: caller.auditActor(context), logger: context.logger)
        return EditedResponse(status: .created, response: TrustPolicyInfo(.init(policy: record, liveTokens: 0)))
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> TrustPolicyList {
        let (_, org) = try await admin(request, context)
        return TrustPolicyList(
            trustPolicies: try await policies.list(org: org, logger: context.logger).map(TrustPolicyInfo.init))
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> TrustPolicyInfo {
        let (_, org) = try await admin(request, context)
        return TrustPolicyInfo(try await policies.policy(try Self.id(context), org: org, logger: context.logger))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> TrustPolicyInfo {
        let (caller, org) = try await admin(request, context)
        let id = try Self.id(context)
        let body = try await request.decodeJSON(TrustPolicyUpdateRequest.self, context: context)
        let record = try await policies.update(id, org: org, actor: caller.auditActor(context), logger: context.logger)
        { fields in
            if let name = body.name { fields.name = name }
            if let issuer = body.issuer { fields.issuer = issuer }
            if let audience = body.audience { fields.audience = audience }
            if let conditions = body.conditions { fields.conditions = conditions }
            if let scopes = body.scopes { fields.scopes = scopes }
            if let lifetime = body.maxLifetimeSeconds { fields.maxLifetimeSeconds = lifetime }
            if let label = body.label { fields.label = label }
        }
        return TrustPolicyInfo(try await policies.policy(record.id, org: org, logger: context.logger))
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> TrustPolicyDeleted {
        let (caller, org) = try await admin(request, context)
        let revoked = try await policies.delete(
            try Self.id(context), org: org, actor: caller.auditActor(context), logger: context.logger)
        return TrustPolicyDeleted(message: "Trust policy deleted", revokedTokens: revoked)
    }

    func admin(_ request: Request, _ context: TesseraRequestContext) async throws -> (Caller, OrganizationRecord) {
        try await resolver.resolve(request, context, scope: "org:admin", admin: true)
    }

    static func id(_ context: TesseraRequestContext) throws -> UUID {
        guard let id = context.parameters.get("policy").flatMap(UUID.init(uuidString:)) else {
            throw TrustPolicyService.notFound
        }
        return id
    }
}
