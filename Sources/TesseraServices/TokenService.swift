import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraVerification

/// What can be done to tokens, with its rules, transactions and audit events: one piece of code
/// for every face of Tessera (the `/api-tokens` routes, the BentoCloud routes, CLI login and the
/// web console). Refusals are ``DomainError``s, which each surface maps once.
public struct TokenService: Sendable {
    public let store: TesseraStore

    public init(store: TesseraStore) {
        self.store = store
    }

    public static let tokenNotFound = DomainError.notFound("Token not found")

    /// What a create asks for, whichever face it came through.
    public struct CreateRequest: Sendable {
        public var name: String
        public var groups: [String]?
        public var isSystemToken: Bool?
        public var tokenExpiration: Int64?
        /// `"tokenExpiration": null` asks for a token that never expires (org policy permitting).
        public var neverExpires = false
        public var description: String?
        public var scopes: [String]?
        /// Access rules (method, path pattern, host), checked by ``AccessRule``; never change.
        public var accessRules: [(method: String, path: String, host: String?)]?
        /// CIDRs the token may be used from; never change.
        public var allowedCidrs: [String]?

        public init(
            name: String, description: String? = nil, scopes: [String]? = nil, tokenExpiration: Int64? = nil,
            neverExpires: Bool = false, isSystemToken: Bool? = nil, groups: [String]? = nil
        ) {
            self.name = name
            self.description = description
            self.scopes = scopes
            self.tokenExpiration = tokenExpiration
            self.neverExpires = neverExpires
            self.isSystemToken = isSystemToken
            self.groups = groups
        }
    }

    /// A token just made (created or rotated): its record and the secret, shown once.
    public struct Issued: Sendable {
        public let record: TokenRecord
        public let secret: TokenSecret

        public init(record: TokenRecord, secret: TokenSecret) {
            self.record = record
            self.secret = secret
        }
    }

    // MARK: - Rules

    /// What every token route needs: the route's `scope` (an org's own catalog may imply
    /// built-in ones, BentoCloud's names: it is read only when the token holds such a scope) and,
    /// for non-admin people, the org's API group (LISA).
    public func authorize(_ caller: Caller, org: OrganizationRecord, scope: String, logger: Logger) async throws {
        var catalog = ScopeCatalog.builtIn
        if let token = caller.token, token.scopes.contains(where: { ScopeCatalog.builtIn.entries[$0] == nil }) {
            catalog = ScopeCatalog(
                try await store.withConnection {
                    try await OrganizationRepository($0, logger: logger).scopeCatalog(orgID: org.id)
                })
        }
        guard caller.holds(scope, catalog: catalog) else {
            throw DomainError.forbidden("This token lacks the \(scope) scope")
        }
        if let apiGroup = org.apiGroup, !caller.isAdmin(catalog: .builtIn), caller.token?.kind != .organization,
            !caller.groups.contains(apiGroup)
        {
            throw DomainError.forbidden("You are not in the API group \(apiGroup) of organization \(org.slug)")
        }
    }

    // MARK: - Reading

    /// The calling token's own record (`GET /api-tokens/self`).
    public func own(_ token: VerifiedToken, caller: Caller, logger: Logger) async throws -> TokenRecord {
        let record = try await store.withConnection { connection in
            try await TokenRepository(connection, logger: logger).find(id: token.tokenID, orgID: caller.orgID)
        }
        guard let record else { throw Self.tokenNotFound }
        return record
    }

    /// A page of the tokens `caller` may see: admins all, members their own plus organization tokens.
    public func list(caller: Caller, query: TokenQuery, logger: Logger) async throws -> TokenPage {
        try await store.withConnection { connection in
            try await TokenRepository(connection, logger: logger).list(
                orgID: caller.orgID, visibleTo: caller.userID, all: caller.isAdmin(catalog: .builtIn), query: query)
        }
    }

    /// Like ``list(caller:query:logger:)`` for an org, with the number of tokens the query matches
    /// in all (BentoCloud's `total`).
    public func listCounted(caller: Caller, org: OrganizationRecord, query: TokenQuery, logger: Logger) async throws
        -> (page: TokenPage, total: Int)
    {
        let admin = caller.isAdmin(catalog: .builtIn)
        return try await store.withConnection { connection in
            (
                try await TokenRepository(connection, logger: logger).list(
                    orgID: org.id, visibleTo: caller.userID, all: admin, query: query),
                try await TokenRepository(connection, logger: logger).count(
                    orgID: org.id, visibleTo: caller.userID, all: admin, query: query)
            )
        }
    }

    /// The token `id` if the caller may see it: admins all, members their own personal tokens and
    /// every organization token. Otherwise 404, whether or not it exists.
    public func visible(_ id: UUID, caller: Caller, logger: Logger) async throws -> TokenRecord {
        let record = try await store.withConnection { connection in
            try await TokenRepository(connection, logger: logger).find(id: id, orgID: caller.orgID)
        }
        guard let record else { throw Self.tokenNotFound }
        let visible =
            caller.isAdmin(catalog: .builtIn) || record.kind == .organization || record.ownerUserID == caller.userID
        guard visible else { throw Self.tokenNotFound }
        return record
    }

    /// Owner or admin; organization tokens: admin.
    public func mayManage(_ record: TokenRecord, caller: Caller) -> Bool {
        caller.isAdmin(catalog: .builtIn) || (record.kind == .personal && record.ownerUserID == caller.userID)
    }

    // MARK: - Changing

    /// Name, description, status (active|inactive). Scopes never change; revoked is final.
    public func update(
        _ record: TokenRecord, name: String?, description: String??, status: TokenStatus?, caller: Caller,
        actor: AuditActor, logger: Logger
    ) async throws -> TokenRecord {
        guard mayManage(record, caller: caller) else { throw Self.tokenNotFound }
        if let name { try Limits.checkName(name) }
        if let description = description ?? nil { try Limits.checkDescription(description) }
        if status == .revoked {
            throw DomainError.invalidField("status", "must be active or inactive (delete a token to revoke it)")
        }
        if record.status == .revoked && status != nil {
            throw DomainError.conflict("A revoked token cannot be reactivated")
        }
        let updated = try await store.transaction { connection -> TokenRecord? in
            guard
                try await TokenRepository(connection, logger: logger).update(
                    id: record.id, orgID: caller.orgID, name: name, description: description, status: status)
            else { return nil }
            var details: [String: String] = [:]
            if let name { details["name"] = name }
            if let status { details["status"] = status.rawValue }
            let action: AuditAction =
                status.map { $0 != record.status ? .tokenStatusChanged : .tokenUpdated } ?? .tokenUpdated
            try await AuditRepository(connection, logger: logger).record(
                actor.event(
                    orgID: caller.orgID, action: action, token: record.id, target: record.username, details: details))
            return try await TokenRepository(connection, logger: logger).find(id: record.id, orgID: caller.orgID)
        }
        guard let updated else { throw Self.tokenNotFound }
        WriteJournal.note(.token(record.id))
        return updated
    }

    /// A new secret (and a new id) with the same metadata; the old secret stops at once, or after
    /// `overlapSeconds` (≤ 86400). Rotating a token already rotated away revokes its whole family.
    public func rotate(
        _ record: TokenRecord, overlapSeconds overlap: Int, caller: Caller, actor: AuditActor, logger: Logger
    )
        async throws -> Issued
    {
        guard mayManage(record, caller: caller) else { throw Self.tokenNotFound }
        guard (0...86_400).contains(overlap) else {
            throw DomainError.invalidField("overlapSeconds", "must be from 0 to 86400")
        }
        guard record.federation == nil else {
            throw DomainError.conflict("A token exchanged under a trust policy cannot be rotated: exchange a new one")
        }
        let now = store.clock.now()
        let secret = TokenSecret.generate(kind: record.kind)
        let outcome: RotationOutcome
        do {
            outcome = try await store.transaction { connection -> RotationOutcome in
                let outcome = try await TokenRepository(connection, logger: logger).rotate(
                    id: record.id, orgID: caller.orgID, secret: secret, now: now,
                    graceUntil: overlap > 0 ? now.addingTimeInterval(TimeInterval(overlap)) : nil)
                switch outcome {
                case .rotated(let newID):
                    try await AuditRepository(connection, logger: logger).record(
                        actor.event(
                            orgID: caller.orgID, action: .tokenRotated, token: record.id, target: record.username,
                            details: ["newTokenUUID": newID.uuidString.lowercased(), "overlapSeconds": String(overlap)])
                    )
                case .reuseDetected:
                    try await AuditRepository(connection, logger: logger).record(
                        actor.event(
                            orgID: caller.orgID, action: .tokenRotationReuse, token: record.id, target: record.username)
                    )
                case .notFound: break
                }
                return outcome
            }
        } catch let error as PSQLError where error.constraintName == "expiry_after_creation" {
            throw DomainError.invalid("An expired token cannot be rotated: create a new one")
        }
        switch outcome {
        case .notFound:
            throw DomainError.conflict("A revoked token cannot be rotated")
        case .reuseDetected:
            throw DomainError.conflict("This token was already rotated; every token of its family is now revoked")
        case .rotated(let newID):
            WriteJournal.note(.token(record.id))
            let fresh = try await store.withConnection {
                try await TokenRepository($0, logger: logger).find(id: newID, orgID: caller.orgID)
            }
            guard let fresh else { throw Self.tokenNotFound }
            return Issued(record: fresh, secret: secret)
        }
    }

    public func delete(_ record: TokenRecord, caller: Caller, actor: AuditActor, logger: Logger) async throws {
        guard mayManage(record, caller: caller) else { throw Self.tokenNotFound }
        let deleted = try await store.transaction { connection in
            guard try await TokenRepository(connection, logger: logger).delete(id: record.id, orgID: caller.orgID)
            else {
                return false
            }
            try await AuditRepository(connection, logger: logger).record(
                actor.event(
                    orgID: caller.orgID, action: .tokenDeleted, token: record.id, target: record.username,
                    details: ["kind": record.kind.rawValue, "name": record.name]))
            return true
        }
        guard deleted else { throw Self.tokenNotFound }
        WriteJournal.note(.token(record.id))
    }

    // MARK: - Creating

    /// The caller's own personal token (groups = their current groups).
    public func createOwn(
        _ body: CreateRequest, caller: Caller, org: OrganizationRecord, actor: AuditActor, logger: Logger
    )
        async throws -> Issued
    {
        guard let userID = caller.userID, caller.role != nil else {
            throw DomainError.forbidden(
                "Only members can create their own token; organization tokens cannot own tokens")
        }
        let admin = caller.isAdmin(catalog: .builtIn)
        if !admin && !org.userTokensEnabled {
            throw DomainError.forbidden("User-managed API tokens are disabled in this organization")
        }
        let row = try await newRow(
            body, caller: caller, org: org, admin: admin, kind: .personal, ownerUserID: userID,
            username: caller.username,
            groups: caller.groups, logger: logger)
        return try await insert(
            row, caller: caller, actor: actor, logger: logger,
            duplicate: org.personalTokenLimit == 1
                ? "Token for user already exists. Delete it first to create a new one."
                : "You already have \(org.personalTokenLimit) tokens, the limit of this organization. Delete one first to create a new one."
        )
    }

    /// Admins: a member's personal token, or (`isSystemToken`) an organization token labelled `username`.
    public func createFor(
        _ username: String, _ body: CreateRequest, caller: Caller, org: OrganizationRecord, actor: AuditActor,
        logger: Logger
    ) async throws -> Issued {
        guard caller.isAdmin(catalog: .builtIn) else {
            throw DomainError.notAnAdmin("Only organization admins can create tokens for other users")
        }
        if body.isSystemToken == true {
            guard Validation.isValidUsername(username) else {
                throw DomainError.invalid("Service label \"\(username)\" is invalid: use letters, digits and ._@+-")
            }
            let row = try await newRow(
                body, caller: caller, org: org, admin: true, kind: .organization, ownerUserID: nil, username: username,
                groups: body.groups ?? [], logger: logger)
            return try await insert(row, caller: caller, actor: actor, logger: logger, duplicate: "")
        }
        let member = try await store.withConnection { connection -> MemberRecord? in
            guard let user = try await UserRepository(connection, logger: logger).find(username: username) else {
                return nil
            }
            return try await MembershipRepository(connection, logger: logger).find(orgID: org.id, userID: user.id)
        }
        guard let member else {
            throw DomainError.invalid("User \(username) is not a member of organization \(org.slug)")
        }
        let row = try await newRow(
            body, caller: caller, org: org, admin: true, kind: .personal, ownerUserID: member.userID,
            username: member.username, groups: body.groups ?? member.groups, logger: logger)
        return try await insert(
            row, caller: caller, actor: actor, logger: logger,
            duplicate: org.personalTokenLimit == 1
                ? "User \(username) already has a token"
                : "User \(username) already has \(org.personalTokenLimit) tokens, the limit of this organization")
    }

    /// Validates a create body against the field rules (422) and the org's policy and catalog (400).
    public func newRow(
        _ body: CreateRequest, caller: Caller, org: OrganizationRecord, admin: Bool, kind: TokenKind,
        ownerUserID: UUID?, username: String, groups: [String], logger: Logger
    ) async throws -> NewTokenRow {
        try Limits.checkName(body.name)
        if let description = body.description { try Limits.checkDescription(description) }
        try Limits.checkGroups(groups)
        let now = store.clock.now()
        let expiresAt = try TokenPolicy.expiry(
            requested: body.tokenExpiration, neverExpires: body.neverExpires, now: now,
            policy: .init(
                defaultDays: org.defaultTokenLifetimeDays, maxDays: org.maxTokenLifetimeDays,
                allowNonExpiring: org.allowNonExpiringTokens))
        let requested = body.scopes ?? org.defaultScopes
        // The shared catalog (no round trip, issue #24); a scope it lacks may have just been added.
        var catalog = try await store.scopeCatalog(orgID: org.id, now: now, logger: logger)
        if requested.contains(where: { catalog.entries[$0] == nil }) {
            catalog = try await store.scopeCatalog(orgID: org.id, now: now, fresh: true, logger: logger)
        }
        let scopes = try TokenPolicy.scopes(
            requested, catalog: catalog, organization: org.slug, grantedByAdmin: admin,
            ownPlatformAdminPersonalToken: kind == .personal && ownerUserID == caller.userID && caller.platformAdmin,
            organizationToken: kind == .organization)
        var row = NewTokenRow(
            orgID: org.id, kind: kind, ownerUserID: ownerUserID, username: username, name: body.name,
            description: body.description, scopes: scopes, groups: groups, secret: .generate(kind: kind),
            expiresAt: expiresAt, createdAt: now, createdBy: caller.username, createdByUserID: caller.userID)
        row.accessRules = try [AccessRule].checked(body.accessRules ?? [])
        row.allowedCidrs = try [AddressRange].checked(body.allowedCidrs ?? [])
        return row
    }

    /// Inserts the token and its audit event in one transaction; the personal token limit (a
    /// trigger counting live tokens per membership) turns one too many, even a concurrent one,
    /// into LISA's 400.
    public func insert(_ row: NewTokenRow, caller: Caller, actor: AuditActor, logger: Logger, duplicate: String)
        async throws
        -> Issued
    {
        do {
            // One statement (token, audit event, the row as lists show it): one round trip (#24).
            let record = try await store.withConnection { connection in
                try await TokenRepository(connection, logger: logger).insertAudited(
                    row,
                    audit: actor.event(
                        orgID: row.orgID, action: .tokenCreated, target: row.username,
                        details: [
                            "kind": row.kind.rawValue, "name": row.name, "scopes": row.scopes.joined(separator: " "),
                        ]), mode: store.statements)
            }
            WriteJournal.note()  // a new token: no cache holds it yet
            return Issued(record: record, secret: row.secret)
        } catch let error as PSQLError where error.constraintName == "tokens_personal_token_limit" {
            throw DomainError.invalid(duplicate)
        } catch let error as PSQLError where error.isForeignKeyViolation && row.kind == .personal {
            // The membership went away while this token was being made (a concurrent removal).
            throw DomainError.invalid("User \(row.username) is not a member of organization \(caller.orgSlug)")
        }
    }
}
