import Foundation
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices

/// LISA's `/api-tokens` routes (DESIGN §4.1), the same under `/orgs/{org}/api-tokens`.
package struct TokenController {
    let store: TesseraStore
    let resolver: CallerResolver
    var operations: TokenService { TokenService(store: store) }

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.get(use: list)
        group.post(use: createOwn)
        group.get("self", use: getSelf)
        group.get(":tokenUUID", use: get)
        group.patch(":tokenUUID", use: update)
        group.post(":tokenUUID/rotate", use: rotate)
        group.delete(":tokenUUID", use: delete)
        // Hummingbird wants one parameter name per path position: the POST reads it as a username.
        group.post(":tokenUUID", use: createFor)
    }

    // MARK: - Handlers (wire types: TesseraAPI's TokenInfo, TokenList, TokenCreateRequest, …)

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> TokenList {
        let (caller, _) = try await authorize(request, context, scope: "tokens:read")
        let page = try await operations.list(
            caller: caller, query: try Self.listQuery(request.uri.queryParameters), logger: context.logger)
        let now = store.clock.now()
        return TokenList(
            tokens: page.records.map { TokenInfo(record: $0, now: now) }, nextCursor: page.next.map(Self.cursor))
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> TokenInfo {
        let (caller, _) = try await authorize(request, context, scope: "tokens:read")
        let record = try await visibleToken(request, context, caller)
        return TokenInfo(record: record, now: store.clock.now())
    }

    /// `GET /api-tokens/self`: the calling token's own metadata.
    @Sendable func getSelf(_ request: Request, context: TesseraRequestContext) async throws -> TokenInfo {
        let (caller, _) = try await resolver.resolve(request, context: context, orgSlug: context.parameters.get("org"))
        guard let token = caller.token, token.orgID == caller.orgID else {
            throw Problem(.badRequest, "Only an API token can ask about itself: call this route with a token")
        }
        return TokenInfo(
            record: try await operations.own(token, caller: caller, logger: context.logger), now: store.clock.now())
    }

    /// `PATCH /api-tokens/{tokenUUID}`: `name`, `description`, `status` active|inactive (merge-patch).
    /// Owner or admin; organization tokens: admin. Scopes never change; revoked is final.
    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> TokenInfo {
        let (caller, _) = try await authorize(request, context, scope: "tokens:write")
        let record = try await visibleToken(request, context, caller)
        guard operations.mayManage(record, caller: caller) else { throw Self.tokenNotFound }
        let body = try await request.decodeJSON(MergePatch.self, context: context, nullable: ["description"])
        let name: String?
        let description: String??
        let statusText: String?
        do {
            for (field, what) in [("accessRules", "Access rules"), ("allowedCidrs", "Address limits")]
            where body.has(field) {
                throw Problem(.badRequest, "\(what) cannot change: create a new token with the limits you need")
            }
            if try body.nullable("scopes", as: [String].self) != nil {
                throw Problem(.badRequest, "Scopes cannot change: create a new token with the scopes you need")
            }
            name = try body.value("name")
            description = try body.nullable("description")
            statusText = try body.value("status")
        } catch let error as DecodingError {
            throw Problem.unprocessable(error)
        }
        var status: TokenStatus?
        if let statusText {
            guard let parsed = TokenStatus(rawValue: statusText), parsed != .revoked else {
                throw Problem.invalidField("status", "must be active or inactive (delete a token to revoke it)")
            }
            status = parsed
        }
        let updated = try await operations.update(
            record, name: name, description: description, status: status, caller: caller,
            actor: caller.auditActor(context), logger: context.logger)
        return TokenInfo(record: updated, now: store.clock.now())
    }

    /// `POST /api-tokens/{tokenUUID}/rotate`: a new secret (and a new tokenUUID) with the same
    /// metadata; the old secret stops at once, or after `overlapSeconds` (≤ 86400). Rotating a
    /// token that was already rotated away revokes its whole family (reuse detection).
    @Sendable func rotate(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<TokenInfo>
    {
        let (caller, _) = try await authorize(request, context, scope: "tokens:write")
        let record = try await visibleToken(request, context, caller)
        guard operations.mayManage(record, caller: caller) else { throw Self.tokenNotFound }
        let body = try await request.decodeJSON(
            TokenRotateRequest.self, context: context, whenEmpty: TokenRotateRequest())
        let issued = try await operations.rotate(
            record, overlapSeconds: body.overlapSeconds ?? 0, caller: caller, actor: caller.auditActor(context),
            logger: context.logger)
        return created(issued)
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> TokenDeleted {
        let (caller, _) = try await authorize(request, context, scope: "tokens:write")
        let record = try await visibleToken(request, context, caller)
        try await operations.delete(record, caller: caller, actor: caller.auditActor(context), logger: context.logger)
        return TokenDeleted(message: "Token deleted successfully", tokenUUID: record.id.uuidString.lowercased())
    }

    /// `POST /api-tokens`: a member's own personal token (groups = their current groups).
    @Sendable func createOwn(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<
        TokenInfo
    > {
        let (caller, org) = try await authorize(request, context, scope: "tokens:write")
        let body = TokenService.CreateRequest(
            try await request.decodeJSON(TokenCreateRequest.self, context: context, nullable: ["tokenExpiration"]))
        return created(
            try await operations.createOwn(
                body, caller: caller, org: org, actor: caller.auditActor(context), logger: context.logger))
    }

    /// `POST /api-tokens/{username}`: an admin creates a member's personal token, or with
    /// `isSystemToken: true` an organization token labelled `username`.
    @Sendable func createFor(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<
        TokenInfo
    > {
        let (caller, org) = try await authorize(request, context, scope: "tokens:write")
        guard caller.isAdmin(catalog: .builtIn) else {
            throw Problem(.unauthorized, "Only organization admins can create tokens for other users")
        }
        let username = try context.parameters.require("tokenUUID")
        let body = TokenService.CreateRequest(
            try await request.decodeJSON(TokenCreateRequest.self, context: context, nullable: ["tokenExpiration"]))
        return created(
            try await operations.createFor(
                username, body, caller: caller, org: org, actor: caller.auditActor(context), logger: context.logger))
    }

    private func created(_ issued: TokenService.Issued) -> EditedResponse<TokenInfo> {
        EditedResponse(
            status: .created,
            response: TokenInfo(record: issued.record, now: store.clock.now(), token: issued.secret.plaintext))
    }

    // MARK: - Lists

    /// `limit` (1-1000, default 100), `cursor`, `search`, `kind`, `status`, `source` (`direct`, the
    /// default, `federation` or `all`), `sort` (`-createdDate`, the default, or `createdDate`). Bad
    /// values are 400s that say what is allowed.
    package static func listQuery(_ parameters: Parameters) throws -> TokenQuery {
        try parameters.requireSingle("limit", "cursor", "search", "kind", "status", "source", "sort")
        var query = TokenQuery()
        if let raw = parameters.get("limit") {
            guard let limit = Int(raw), (1...1000).contains(limit) else {
                throw Problem(.badRequest, "limit must be an integer from 1 to 1000")
            }
            query.limit = limit
        }
        if let raw = parameters.nonEmpty("cursor") {
            guard let position = position(fromCursor: raw) else {
                throw Problem(.badRequest, "cursor is not one this server issued")
            }
            query.after = position
        }
        if let search = parameters.nonEmpty("search"), !search.isEmpty {
            guard search.count <= Limits.searchLength else {
                throw Problem(.badRequest, "search must be at most 200 characters")
            }
            query.search = search
        }
        if let raw = parameters.get("kind") {
            guard let kind = TokenKind(rawValue: raw) else {
                throw Problem(.badRequest, "kind must be personal or organization")
            }
            query.kind = kind
        }
        if let raw = parameters.get("status") {
            guard let status = TokenStatus(rawValue: raw) else {
                throw Problem(.badRequest, "status must be active, inactive or revoked")
            }
            query.status = status
        }
        switch parameters.get("source") {
        case nil, "direct": query.source = .direct
        case "federation": query.source = .federation
        case "all": query.source = nil
        default: throw Problem(.badRequest, "source must be direct, federation or all")
        }
        switch parameters.get("sort") {
        case nil, "-createdDate": query.ascending = false
        case "createdDate": query.ascending = true
        default: throw Problem(.badRequest, "sort must be createdDate or -createdDate")
        }
        return query
    }

    /// Cursors are opaque: base64url of `<created_at µs>:<tokenUUID>`.
    package static func cursor(_ position: TokenQuery.Position) -> String {
        Data("\(position.micros):\(position.id.uuidString.lowercased())".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func position(fromCursor cursor: String) -> TokenQuery.Position? {
        var base64 = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard cursor.count <= 100, let data = Data(base64Encoded: base64) else { return nil }
        let parts = String(decoding: data, as: UTF8.self).split(separator: ":")
        guard parts.count == 2, let micros = Int64(parts[0]), let id = UUID(uuidString: String(parts[1])) else {
            return nil
        }
        return .init(micros: micros, id: id)
    }

    // MARK: - Rules

    static let tokenNotFound = TokenService.tokenNotFound

    /// Resolves the caller and applies what every token route needs: the route's scope and, for
    /// non-admins, the org's API group (LISA).
    func authorize(_ request: Request, _ context: TesseraRequestContext, scope: String) async throws
        -> (Caller, OrganizationRecord)
    {
        let (caller, org) = try await resolver.resolve(
            request, context: context, orgSlug: context.parameters.get("org"))
        try await operations.authorize(caller, org: org, scope: scope, logger: context.logger)
        return (caller, org)
    }

    /// The token named by the path if the caller may see it (else 404, whether or not it exists).
    func visibleToken(_ request: Request, _ context: TesseraRequestContext, _ caller: Caller) async throws
        -> TokenRecord
    {
        guard let id = UUID(uuidString: try context.parameters.require("tokenUUID")) else { throw Self.tokenNotFound }
        return try await operations.visible(id, caller: caller, logger: context.logger)
    }
}
