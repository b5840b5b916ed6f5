import Foundation
import Hummingbird
import Logging
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraServices

/// BentoCloud's API-token surface (DESIGN §9), so the unmodified `bentoml` client
/// (`bentoml cloud login`, `bentoml api-token …`, `bentoml.api_token.*`) works against Tessera:
/// `/api/v1/auth/current`, `/api/v1/current_org`, `/api/v1/api_tokens[/{uid}]`. The same
/// operations and rules as `/api-tokens` (``TokenService``: tenancy, authority, scopes from the
/// org's catalog, policy lifetimes, the personal token limit, audit events, the cache barrier).
///
/// The client parses strictly: every success is exactly 200, every required key is present, text
/// is never null (`""` instead), lists are lists, dates are RFC 3339 strings.
struct BentoCloudController {
    let store: TesseraStore
    let resolver: CallerResolver
    var operations: TokenService { TokenService(store: store) }

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.get("auth/current", use: currentUser)
        group.get("current_org", use: currentOrg)
        group.get("api_tokens", use: list)
        group.post("api_tokens", use: create)
        group.get("api_tokens/:uid", use: get)
        group.delete("api_tokens/:uid", use: delete)
    }

    // MARK: - Wire types

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// `{name, email, first_name, last_name}`. Tessera keeps no email addresses: `email` carries
    /// the username (the client prints it as "Logged in as …"); names are "".
    struct User: Encodable {
        let name: String
        let email: String
        let first_name = ""
        let last_name = ""

        init(_ username: String) {
            name = username
            email = username
        }
    }

    struct Organization: ResponseEncodable {
        let uid: String
        let name: String
        let description: String
        let created_at: String
        let updated_at: String
        let deleted_at: String?
        let resource_type = "organization"
        let labels: [String] = []

        init(_ org: OrganizationRecord) {
            uid = org.id.uuidString.lowercased()
            name = org.slug
            description = org.displayName
            created_at = BentoCloudController.timestamp(org.createdAt)
            updated_at = BentoCloudController.timestamp(org.updatedAt)
            deleted_at = nil
        }

        enum CodingKeys: String, CodingKey {
            case uid, name, description, created_at, updated_at, deleted_at, resource_type, labels
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(uid, forKey: .uid)
            try c.encode(name, forKey: .name)
            try c.encode(description, forKey: .description)
            try c.encode(created_at, forKey: .created_at)
            try c.encode(updated_at, forKey: .updated_at)
            try c.encode(deleted_at, forKey: .deleted_at)  // present, null
            try c.encode(resource_type, forKey: .resource_type)
            try c.encode(labels, forKey: .labels)
        }
    }

    struct Token: ResponseEncodable {
        let record: TokenRecord
        let org: OrganizationRecord
        let now: Date
        var token: String?

        enum CodingKeys: String, CodingKey {
            case uid, created_at, updated_at, deleted_at, name, resource_type, labels, description, scopes, user,
                organization
            case expired_at, last_used_at, is_expired, is_api_token, is_organization_token, is_global_access, token
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(record.id.uuidString.lowercased(), forKey: .uid)
            try c.encode(BentoCloudController.timestamp(record.createdAt), forKey: .created_at)
            try c.encode(BentoCloudController.timestamp(record.updatedAt), forKey: .updated_at)
            try c.encode(record.revokedAt.map(BentoCloudController.timestamp), forKey: .deleted_at)
            try c.encode(record.name, forKey: .name)
            try c.encode("api_token", forKey: .resource_type)
            try c.encode([String](), forKey: .labels)
            try c.encode(record.description ?? "", forKey: .description)
            try c.encode(record.scopes, forKey: .scopes)
            try c.encode(User(record.username), forKey: .user)
            try c.encode(Organization(org), forKey: .organization)
            try c.encode(record.expiresAt.map(BentoCloudController.timestamp), forKey: .expired_at)
            try c.encode(record.lastUsedAt.map(BentoCloudController.timestamp), forKey: .last_used_at)
            try c.encode(record.isExpired(at: now), forKey: .is_expired)
            try c.encode(true, forKey: .is_api_token)
            try c.encode(record.kind == .organization, forKey: .is_organization_token)
            try c.encode(false, forKey: .is_global_access)
            if let token { try c.encode(token, forKey: .token) }
        }
    }

    struct TokenList: ResponseEncodable {
        let start: Int
        let count: Int
        let total: Int
        let items: [Token]
    }

    /// What `bentoml api-token create` sends: all four keys, `expired_at` a naive date-time. A
    /// client that limits the token to Deployments (BentoCloud's per-Deployment tokens) may send
    /// `deployments`: each becomes the access rule `* /deployments/{name}/**` (DESIGN §14).
    struct CreateRequest: Decodable {
        var name: String
        var description: String?
        var scopes: [String]?
        var expired_at: String?
        var deployments: [String]?
    }

    // MARK: - Handlers

    @Sendable func currentUser(_ request: Request, context: TesseraRequestContext) async throws -> [String: String] {
        let (caller, _) = try await resolver.resolve(request, context: context, orgSlug: nil)
        let user = User(caller.username)
        return ["name": user.name, "email": user.email, "first_name": "", "last_name": ""]
    }

    @Sendable func currentOrg(_ request: Request, context: TesseraRequestContext) async throws -> Organization {
        let (_, org) = try await resolver.resolve(request, context: context, orgSlug: nil)
        return Organization(org)
    }

    /// `?start=0&count=100[&search=S]`: the caller's visible live tokens, newest first.
    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> TokenList {
        let (caller, org) = try await authorize(request, context, scope: "tokens:read")
        let parameters = request.uri.queryParameters
        guard let start = Int(parameters.get("start") ?? "0"), start >= 0, start <= 100_000,
            let count = Int(parameters.get("count") ?? "20"), (1...1000).contains(count)
        else { throw Problem(.badRequest, "start must be 0 or more, count from 1 to 1000") }
        var query = TokenQuery(limit: min(start + count, 100_000))
        query.liveOnly = true
        if let search = parameters.get("search")?.replacingOccurrences(of: "+", with: " "), !search.isEmpty {
            guard search.count <= Limits.searchLength else {
                throw Problem(.badRequest, "search must be at most 200 characters")
            }
            query.search = search
        }
        let (page, total) = try await operations.listCounted(
            caller: caller, org: org, query: query, logger: context.logger)
        let now = store.clock.now()
        let items = page.records.dropFirst(start).map { Token(record: $0, org: org, now: now) }
        return TokenList(start: start, count: items.count, total: total, items: Array(items))
    }

    /// A personal token of the caller. `expired_at` is taken as UTC; null means the org's default
    /// lifetime (never "never").
    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> Token {
        let (caller, org) = try await authorize(request, context, scope: "tokens:write")
        let body = try await request.decodeJSON(
            CreateRequest.self, context: context, nullable: ["description", "scopes", "expired_at", "deployments"])
        var create = TokenService.CreateRequest(name: body.name, description: body.description, scopes: body.scopes)
        if let deployments = body.deployments, !deployments.isEmpty {
            guard deployments.allSatisfy({ !$0.isEmpty && !$0.contains("/") && !$0.contains("*") && $0.count <= 200 })
            else { throw Problem.invalidField("deployments", "must be Deployment names") }
            create.accessRules = deployments.map { ("*", "/deployments/\($0)/**", nil) }
        }
        if let text = body.expired_at {
            guard let date = Self.parseDate(text) else {
                throw Problem.invalidField(
                    "expired_at", "must be a date-time like 2026-12-23 19:10:05 (UTC) or RFC 3339")
            }
            create.tokenExpiration = Int64(date.timeIntervalSince1970.rounded(.down))
        }
        let issued = try await operations.createOwn(
            create, caller: caller, org: org, actor: caller.auditActor(context), logger: context.logger)
        var token = Token(record: issued.record, org: org, now: store.clock.now())
        token.token = issued.secret.plaintext
        return token
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> Token {
        let (caller, org) = try await authorize(request, context, scope: "tokens:read")
        let record = try await visible(context, caller)
        return Token(record: record, org: org, now: store.clock.now())
    }

    /// Deletes the token (as `DELETE /api-tokens/{id}`) and answers it, as BentoCloud does, with 200.
    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Token {
        let (caller, org) = try await authorize(request, context, scope: "tokens:write")
        var record = try await visible(context, caller)
        try await operations.delete(record, caller: caller, actor: caller.auditActor(context), logger: context.logger)
        record.revokedAt = store.clock.now()
        return Token(record: record, org: org, now: store.clock.now())
    }

    // MARK: - Rules

    func authorize(_ request: Request, _ context: TesseraRequestContext, scope: String) async throws -> (
        Caller, OrganizationRecord
    ) {
        let (caller, org) = try await resolver.resolve(
            request, context: context, orgSlug: context.parameters.get("org"))
        try await operations.authorize(caller, org: org, scope: scope, logger: context.logger)
        return (caller, org)
    }

    /// Revoked tokens are gone for this surface (404, as for an unknown uid).
    func visible(_ context: TesseraRequestContext, _ caller: Caller) async throws -> TokenRecord {
        guard let id = context.parameters.get("uid").flatMap(UUID.init(uuidString:)) else {
            throw TokenService.tokenNotFound
        }
        let record = try await operations.visible(id, caller: caller, logger: context.logger)
        guard record.status != .revoked else { throw TokenService.tokenNotFound }
        return record
    }

    /// `2026-12-23 19:10:05.952036` (what the client sends: naive, space), with `T`, with or
    /// without fractions, or RFC 3339 with an offset. Naive times are UTC.
    static func parseDate(_ text: String) -> Date? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.count <= 40 else { return nil }
        let rfc3339 = ISO8601DateFormatter()
        rfc3339.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = rfc3339.date(from: trimmed) { return date }
        rfc3339.formatOptions = [.withInternetDateTime]
        if let date = rfc3339.date(from: trimmed) { return date }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        for format in [
            "yyyy-MM-dd HH:mm:ss.SSSSSS", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
            "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd",
        ] {
            formatter.dateFormat = format
            if let date = formatter.date(from: trimmed) { return date }
        }
        return nil
    }
}
