import Foundation
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// LISA's `/api-tokens` routes (DESIGN §4.1), the same under `/orgs/{org}/api-tokens`.
struct TokenController {
    let store: TesseraStore
    let resolver: CallerResolver

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

    // MARK: - Wire types

    struct CreateRequest: Decodable {
        var name: String
        var groups: [String]?
        var isSystemToken: Bool?
        var tokenExpiration: Int64?
        /// `"tokenExpiration": null` asks for a token that never expires (org policy permitting).
        var neverExpires = false
        var description: String?
        var scopes: [String]?

        enum CodingKeys: String, CodingKey {
            case name, groups, isSystemToken, tokenExpiration, description, scopes
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            groups = try container.decodeIfPresent([String].self, forKey: .groups)
            isSystemToken = try container.decodeIfPresent(Bool.self, forKey: .isSystemToken)
            tokenExpiration = try container.decodeIfPresent(Int64.self, forKey: .tokenExpiration)
            neverExpires = try container.contains(.tokenExpiration) && container.decodeNil(forKey: .tokenExpiration)
            description = try container.decodeIfPresent(String.self, forKey: .description)
            scopes = try container.decodeIfPresent([String].self, forKey: .scopes)
        }
    }

    /// LISA's TokenInfo plus ours. Every key is always present (null when empty), as LISA does.
    struct TokenInfo: ResponseEncodable {
        let record: TokenRecord
        let now: Date
        /// Only in the create response.
        var token: String? = nil

        enum Key: String, CodingKey {
            case token, tokenUUID, tokenExpiration, createdDate, username, createdBy, name, groups, isSystemToken
            case isExpired, isLegacy, organization, kind, description, scopes, status, revokedReason, revokedDate
            case updatedDate, lastUsedDate, tokenPrefix
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            if let token { try c.encode(token, forKey: .token) }
            try c.encode(record.id.uuidString.lowercased(), forKey: .tokenUUID)
            try c.encode(record.expiresAt.map(epoch), forKey: .tokenExpiration)
            try c.encode(epoch(record.createdAt), forKey: .createdDate)
            try c.encode(record.username, forKey: .username)
            try c.encode(record.createdBy, forKey: .createdBy)
            try c.encode(record.name, forKey: .name)
            try c.encode(record.groups, forKey: .groups)
            try c.encode(record.kind == .organization, forKey: .isSystemToken)
            try c.encode(record.isExpired(at: now), forKey: .isExpired)
            try c.encode(false, forKey: .isLegacy)
            try c.encode(record.orgSlug, forKey: .organization)
            try c.encode(record.kind.rawValue, forKey: .kind)
            try c.encode(record.description, forKey: .description)
            try c.encode(record.scopes, forKey: .scopes)
            try c.encode(record.status.rawValue, forKey: .status)
            try c.encode(record.revokedReason, forKey: .revokedReason)
            try c.encode(record.revokedAt.map(epoch), forKey: .revokedDate)
            try c.encode(epoch(record.updatedAt), forKey: .updatedDate)
            try c.encode(record.lastUsedAt.map(epoch), forKey: .lastUsedDate)
            try c.encode(record.tokenPrefix, forKey: .tokenPrefix)
        }

        private func epoch(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970.rounded(.down)) }
    }

    struct TokenList: ResponseEncodable {
        let tokens: [TokenInfo]
        /// Pass as `cursor` for the next page; absent on the last page.
        let nextCursor: String?
    }

    struct Deleted: ResponseEncodable {
        let message: String
        let tokenUUID: String
    }

    // MARK: - Handlers

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> TokenList {
        let (caller, _) = try await authorize(request, context, scope: "tokens:read")
        let admin = caller.isAdmin(catalog: .builtIn)
        let query = try Self.listQuery(request.uri.queryParameters)
        let page = try await store.client.withConnection { connection in
            try await connection.tokens(
                orgID: caller.orgID, visibleTo: caller.userID, all: admin, query: query, logger: context.logger)
        }
        let now = store.clock.now()
        return TokenList(tokens: page.records.map { TokenInfo(record: $0, now: now) }, nextCursor: page.next.map(Self.cursor))
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
        let record = try await store.client.withConnection { connection in
            try await connection.token(id: token.tokenID, orgID: caller.orgID, logger: context.logger)
        }
        guard let record else { throw Self.tokenNotFound }
        return TokenInfo(record: record, now: store.clock.now())
    }

    /// `PATCH /api-tokens/{tokenUUID}`: `name`, `description`, `status` active|inactive (merge-patch).
    /// Owner or admin; organization tokens: admin. Scopes never change; revoked is final.
    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> TokenInfo {
        let (caller, _) = try await authorize(request, context, scope: "tokens:write")
        let record = try await visibleToken(request, context, caller)
        let mayChange = caller.isAdmin(catalog: .builtIn) || (record.kind == .personal && record.ownerUserID == caller.userID)
        guard mayChange else { throw Self.tokenNotFound }
        let body = try await request.decodeJSON(MergePatch.self, context: context, nullable: ["description"])
        let name: String?
        let description: String??
        let statusText: String?
        do {
            if try body.nullable("scopes", as: [String].self) != nil {
                throw Problem(.badRequest, "Scopes cannot change: create a new token with the scopes you need")
            }
            name = try body.value("name")
            description = try body.nullable("description")
            statusText = try body.value("status")
        } catch let error as DecodingError {
            throw Problem.unprocessable(error)
        }
        if let name, !(1...200).contains(name.count) || !Validation.isPlainText(name) {
            throw Problem.invalidField("name", "must be 1 to 200 characters, without control characters")
        }
        if let description = description ?? nil, description.count > 1000 || !Validation.isPlainText(description, multiline: true) {
            throw Problem.invalidField("description", "must be at most 1000 characters")
        }
        var status: TokenStatus?
        if let statusText {
            guard let parsed = TokenStatus(rawValue: statusText), parsed != .revoked else {
                throw Problem.invalidField("status", "must be active or inactive (delete a token to revoke it)")
            }
            status = parsed
        }
        if record.status == .revoked && status != nil {
            throw Problem(.conflict, "A revoked token cannot be reactivated")
        }
        let updated = try await store.transaction { connection -> TokenRecord? in
            guard try await connection.updateToken(
                id: record.id, orgID: caller.orgID, name: name, description: description, status: status,
                logger: context.logger)
            else { return nil }
            var details: [String: String] = [:]
            if let name { details["name"] = name }
            if let status { details["status"] = status.rawValue }
            let action = status.map { $0 != record.status ? "token.status_changed" : "token.updated" } ?? "token.updated"
            try await connection.recordAudit(
                caller.auditEvent(context, action: action, token: record.id, target: record.username, details: details),
                logger: context.logger)
            return try await connection.token(id: record.id, orgID: caller.orgID, logger: context.logger)
        }
        guard let updated else { throw Self.tokenNotFound }
        return TokenInfo(record: updated, now: store.clock.now())
    }

    struct RotateRequest: Decodable {
        var overlapSeconds: Int?
    }

    /// `POST /api-tokens/{tokenUUID}/rotate`: a new secret (and a new tokenUUID) with the same
    /// metadata; the old secret stops at once, or after `overlapSeconds` (≤ 86400). Rotating a
    /// token that was already rotated away revokes its whole family (reuse detection).
    @Sendable func rotate(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<TokenInfo> {
        let (caller, _) = try await authorize(request, context, scope: "tokens:write")
        let record = try await visibleToken(request, context, caller)
        let mayRotate = caller.isAdmin(catalog: .builtIn) || (record.kind == .personal && record.ownerUserID == caller.userID)
        guard mayRotate else { throw Self.tokenNotFound }
        let body = try await request.decodeJSON(RotateRequest.self, context: context, whenEmpty: RotateRequest())
        let overlap = body.overlapSeconds ?? 0
        guard (0...86_400).contains(overlap) else { throw Problem.invalidField("overlapSeconds", "must be from 0 to 86400") }
        let now = store.clock.now()
        let secret = TokenSecret.generate(kind: record.kind)
        let outcome: RotationOutcome
        do {
            outcome = try await store.transaction { connection -> RotationOutcome in
                let outcome = try await connection.rotateToken(
                    id: record.id, orgID: caller.orgID, secret: secret, now: now,
                    graceUntil: overlap > 0 ? now.addingTimeInterval(TimeInterval(overlap)) : nil,
                    logger: context.logger)
                switch outcome {
                case .rotated(let newID):
                    try await connection.recordAudit(
                        caller.auditEvent(
                            context, action: "token.rotated", token: record.id, target: record.username,
                            details: ["newTokenUUID": newID.uuidString.lowercased(), "overlapSeconds": String(overlap)]),
                        logger: context.logger)
                case .reuseDetected:
                    try await connection.recordAudit(
                        caller.auditEvent(context, action: "token.rotation_reuse", token: record.id, target: record.username),
                        logger: context.logger)
                case .notFound: break
                }
                return outcome
            }
        } catch let error as PSQLError where error.constraintName == "expiry_after_creation" {
            throw Problem(.badRequest, "An expired token cannot be rotated: create a new one")
        }
        switch outcome {
        case .notFound:
            throw Problem(.conflict, "A revoked token cannot be rotated")
        case .reuseDetected:
            throw Problem(.conflict, "This token was already rotated; every token of its family is now revoked")
        case .rotated(let newID):
            let fresh = try await store.client.withConnection {
                try await $0.token(id: newID, orgID: caller.orgID, logger: context.logger)
            }
            guard let fresh else { throw Self.tokenNotFound }
            var info = TokenInfo(record: fresh, now: now)
            info.token = secret.plaintext
            return EditedResponse(status: .created, response: info)
        }
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Deleted {
        let (caller, _) = try await authorize(request, context, scope: "tokens:write")
        let record = try await visibleToken(request, context, caller)
        let mayDelete = caller.isAdmin(catalog: .builtIn) || (record.kind == .personal && record.ownerUserID == caller.userID)
        guard mayDelete else { throw Self.tokenNotFound }
        let deleted = try await store.transaction { connection in
            guard try await connection.deleteToken(id: record.id, orgID: caller.orgID, logger: context.logger) else {
                return false
            }
            try await connection.recordAudit(
                caller.auditEvent(
                    context, action: "token.deleted", token: record.id, target: record.username,
                    details: ["kind": record.kind.rawValue, "name": record.name]),
                logger: context.logger)
            return true
        }
        guard deleted else { throw Self.tokenNotFound }
        return Deleted(message: "Token deleted successfully", tokenUUID: record.id.uuidString.lowercased())
    }

    /// `POST /api-tokens`: a member's own personal token (groups = their current groups).
    @Sendable func createOwn(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<TokenInfo> {
        let (caller, org) = try await authorize(request, context, scope: "tokens:write")
        let body = try await request.decodeJSON(CreateRequest.self, context: context, nullable: ["tokenExpiration"])
        guard let userID = caller.userID, caller.role != nil else {
            throw Problem(.forbidden, "Only members can create their own token; organization tokens cannot own tokens")
        }
        let admin = caller.isAdmin(catalog: .builtIn)
        if !admin && !org.userTokensEnabled {
            throw Problem(.forbidden, "User-managed API tokens are disabled in this organization")
        }
        let row = try await newRow(
            body, caller: caller, org: org, admin: admin, kind: .personal, ownerUserID: userID,
            username: caller.username, groups: caller.groups)
        return try await insert(
            row, caller: caller, context: context,
            duplicate: "Token for user already exists. Delete it first to create a new one.")
    }

    /// `POST /api-tokens/{username}`: an admin creates a member's personal token, or with
    /// `isSystemToken: true` an organization token labelled `username`.
    @Sendable func createFor(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<TokenInfo> {
        let (caller, org) = try await authorize(request, context, scope: "tokens:write")
        guard caller.isAdmin(catalog: .builtIn) else {
            throw Problem(.unauthorized, "Only organization admins can create tokens for other users")
        }
        let username = try context.parameters.require("tokenUUID")
        let body = try await request.decodeJSON(CreateRequest.self, context: context, nullable: ["tokenExpiration"])
        if body.isSystemToken == true {
            guard Validation.isValidUsername(username) else {
                throw Problem(.badRequest, "Service label \"\(username)\" is invalid: use letters, digits and ._@+-")
            }
            let row = try await newRow(
                body, caller: caller, org: org, admin: true, kind: .organization, ownerUserID: nil, username: username,
                groups: body.groups ?? [])
            return try await insert(row, caller: caller, context: context, duplicate: "")
        }
        let member = try await store.client.withConnection { connection -> MemberRecord? in
            guard let user = try await connection.user(username: username, logger: context.logger) else { return nil }
            return try await connection.membership(orgID: org.id, userID: user.id, logger: context.logger)
        }
        guard let member else {
            throw Problem(.badRequest, "User \(username) is not a member of organization \(org.slug)")
        }
        let row = try await newRow(
            body, caller: caller, org: org, admin: true, kind: .personal, ownerUserID: member.userID,
            username: member.username, groups: body.groups ?? member.groups)
        return try await insert(row, caller: caller, context: context, duplicate: "User \(username) already has a token")
    }

    // MARK: - Lists

    /// `limit` (1-1000, default 100), `cursor`, `search`, `kind`, `status`, `sort`
    /// (`-createdDate`, the default, or `createdDate`). Bad values are 400s that say what is allowed.
    static func listQuery(_ parameters: Parameters) throws -> TokenQuery {
        try parameters.requireSingle("limit", "cursor", "search", "kind", "status", "sort")
        var query = TokenQuery()
        if let raw = parameters.get("limit") {
            guard let limit = Int(raw), (1...1000).contains(limit) else {
                throw Problem(.badRequest, "limit must be an integer from 1 to 1000")
            }
            query.limit = limit
        }
        if let raw = parameters.nonEmpty("cursor") {
            guard let position = position(fromCursor: raw) else { throw Problem(.badRequest, "cursor is not one this server issued") }
            query.after = position
        }
        if let search = parameters.nonEmpty("search"), !search.isEmpty {
            guard search.count <= 200 else { throw Problem(.badRequest, "search must be at most 200 characters") }
            query.search = search
        }
        if let raw = parameters.get("kind") {
            guard let kind = TokenKind(rawValue: raw) else { throw Problem(.badRequest, "kind must be personal or organization") }
            query.kind = kind
        }
        if let raw = parameters.get("status") {
            guard let status = TokenStatus(rawValue: raw) else {
                throw Problem(.badRequest, "status must be active, inactive or revoked")
            }
            query.status = status
        }
        switch parameters.get("sort") {
        case nil, "-createdDate": query.ascending = false
        case "createdDate": query.ascending = true
        default: throw Problem(.badRequest, "sort must be createdDate or -createdDate")
        }
        return query
    }

    /// Cursors are opaque: base64url of `<created_at µs>:<tokenUUID>`.
    static func cursor(_ position: TokenQuery.Position) -> String {
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

    static let tokenNotFound = Problem(.notFound, "Token not found")

    /// Resolves the caller and applies what every token route needs: the route's scope and, for
    /// non-admins, the org's API group (LISA).
    func authorize(_ request: Request, _ context: TesseraRequestContext, scope: String) async throws
        -> (Caller, OrganizationRecord)
    {
        let (caller, org) = try await resolver.resolve(request, context: context, orgSlug: context.parameters.get("org"))
        guard caller.holds(scope, catalog: .builtIn) else {
            throw Problem(.forbidden, "This token lacks the \(scope) scope")
        }
        if let apiGroup = org.apiGroup, !caller.isAdmin(catalog: .builtIn), caller.token?.kind != .organization,
            !caller.groups.contains(apiGroup)
        {
            throw Problem(.forbidden, "You are not in the API group \(apiGroup) of organization \(org.slug)")
        }
        return (caller, org)
    }

    /// The token named by the path if the caller may see it: admins all, members their own
    /// personal tokens and every organization token. Otherwise 404, whether or not it exists.
    func visibleToken(_ request: Request, _ context: TesseraRequestContext, _ caller: Caller) async throws -> TokenRecord {
        guard let id = UUID(uuidString: try context.parameters.require("tokenUUID")) else { throw Self.tokenNotFound }
        let record = try await store.client.withConnection { connection in
            try await connection.token(id: id, orgID: caller.orgID, logger: context.logger)
        }
        guard let record else { throw Self.tokenNotFound }
        let visible = caller.isAdmin(catalog: .builtIn) || record.kind == .organization || record.ownerUserID == caller.userID
        guard visible else { throw Self.tokenNotFound }
        return record
    }

    /// Validates a create body against the field rules (422) and the org's policy and catalog (400).
    func newRow(
        _ body: CreateRequest, caller: Caller, org: OrganizationRecord, admin: Bool, kind: TokenKind,
        ownerUserID: UUID?, username: String, groups: [String]
    ) async throws -> NewTokenRow {
        guard (1...200).contains(body.name.count), Validation.isPlainText(body.name) else {
            throw Problem.invalidField("name", "must be 1 to 200 characters, without control characters")
        }
        if let description = body.description, description.count > 1000 || !Validation.isPlainText(description, multiline: true) {
            throw Problem.invalidField("description", "must be at most 1000 characters, without control characters")
        }
        guard groups.count <= 100, groups.allSatisfy({ (1...200).contains($0.count) && Validation.isPlainText($0) }) else {
            throw Problem.invalidField("groups", "must be at most 100 names of 1 to 200 characters")
        }
        let now = store.clock.now()
        let expiresAt: Date?
        if body.neverExpires {
            guard org.allowNonExpiringTokens, org.maxTokenLifetimeDays == nil else {
                throw Problem(
                    .badRequest,
                    org.maxTokenLifetimeDays.map { "Tokens must expire within the organization's maximum lifetime of \($0) days" }
                        ?? "This organization does not allow tokens that never expire")
            }
            expiresAt = nil
        } else if let requested = body.tokenExpiration {
            let date = Date(timeIntervalSince1970: TimeInterval(requested))
            guard date > now else { throw Problem(.badRequest, "Token expiration must be in the future") }
            if let maxDays = org.maxTokenLifetimeDays, date > now.addingTimeInterval(Double(maxDays) * 86_400) {
                throw Problem(
                    .badRequest, "Token expiration exceeds the organization's maximum lifetime of \(maxDays) days")
            }
            expiresAt = date
        } else {
            expiresAt = now.addingTimeInterval(Double(org.defaultTokenLifetimeDays) * 86_400)
        }
        let scopes = Array(Set(body.scopes ?? org.defaultScopes)).sorted()
        guard !scopes.isEmpty, scopes.count <= 100 else {
            throw Problem.invalidField("scopes", "must hold 1 to 100 scope names")
        }
        let catalog = ScopeCatalog(
            try await store.client.withConnection { try await $0.scopeCatalog(orgID: org.id, logger: store.logger) })
        for scope in scopes {
            guard let entry = catalog.entries[scope] else {
                throw Problem(.badRequest, "Unknown scope: \(scope) is not in the catalog of organization \(org.slug)")
            }
            if entry.adminOnly && !admin {
                throw Problem(.badRequest, "Scope \(scope) can only be granted by an organization admin")
            }
        }
        if scopes.contains("platform:admin") {
            let ownerIsPlatformAdmin = kind == .personal && ownerUserID == caller.userID && caller.platformAdmin
            guard ownerIsPlatformAdmin else {
                throw Problem(.badRequest, "Scope platform:admin is only for a platform admin's own personal token")
            }
        }
        return NewTokenRow(
            orgID: org.id, kind: kind, ownerUserID: ownerUserID, username: username, name: body.name,
            description: body.description, scopes: scopes, groups: groups, secret: .generate(kind: kind),
            expiresAt: expiresAt, createdAt: now, createdBy: caller.username, createdByUserID: caller.userID)
    }

    /// Inserts the token and its audit event in one transaction; the one-live-personal-token
    /// index turns a duplicate (even a concurrent one) into LISA's 400.
    func insert(_ row: NewTokenRow, caller: Caller, context: TesseraRequestContext, duplicate: String) async throws
        -> EditedResponse<TokenInfo>
    {
        let record: TokenRecord
        do {
            record = try await store.transaction { connection in
                let id = try await connection.insertToken(row, logger: context.logger)
                try await connection.recordAudit(
                    caller.auditEvent(
                        context, action: "token.created", token: id, target: row.username,
                        details: ["kind": row.kind.rawValue, "name": row.name, "scopes": row.scopes.joined(separator: " ")]),
                    logger: context.logger)
                guard let record = try await connection.token(id: id, orgID: row.orgID, logger: context.logger) else {
                    throw StoreError.noRows
                }
                return record
            }
        } catch let error as PSQLError where error.constraintName == "tokens_one_live_personal_per_member" {
            throw Problem(.badRequest, duplicate)
        } catch let error as PSQLError where error.isForeignKeyViolation && row.kind == .personal {
            // The membership went away while this token was being made (a concurrent removal).
            throw Problem(.badRequest, "User \(row.username) is not a member of organization \(caller.orgSlug)")
        }
        var info = TokenInfo(record: record, now: store.clock.now())
        info.token = row.secret.plaintext
        return EditedResponse(status: .created, response: info)
    }
}
