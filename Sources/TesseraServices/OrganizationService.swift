import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// An organization's life: creation with its built-in scope catalog, policy changes, deletion.
/// The API, the console and `tessera admin` call these, one transaction and one audit event each.
public struct OrganizationService: Sendable {
    let store: TesseraStore

    public init(store: TesseraStore) {
        self.store = store
    }

    /// An organization with its scope catalog, as the API and the console show it.
    public struct Details: Sendable {
        public let record: OrganizationRecord
        public let scopes: [ScopeCatalog.Entry]
    }

    /// Creates an organization (slug `[a-z0-9][a-z0-9-]{1,62}`, display name defaulting to it).
    public func create(slug: String, displayName: String?, by actor: AuditActor) async throws -> OrganizationRecord {
        guard Validation.isValidSlug(slug) else {
            throw DomainError.invalidField("slug", "must match [a-z0-9][a-z0-9-]{1,62}")
        }
        let displayName = displayName ?? slug
        try Limits.checkName(displayName, field: "displayName")
        do {
            return try await store.transaction { [logger = store.logger] connection in
                let id = try await OrganizationRepository(connection, logger: logger).insert(
                    slug: slug, displayName: displayName)
                try await AuditRepository(connection, logger: logger).record(
                    actor.event(orgID: id, action: .orgCreated))
                guard let record = try await OrganizationRepository(connection, logger: logger).find(id: id) else {
                    throw StoreError.noRows
                }
                return record
            }
        } catch let error as PSQLError where error.isUniqueViolation {
            throw DomainError.conflict("Organization \(slug) already exists")
        }
    }

    /// The organizations a caller may list: all (platform admins), the token's own, or the
    /// user's memberships.
    public func list(all: Bool, caller: Caller, logger: Logger) async throws -> [Details] {
        try await store.withConnection { connection in
            let records: [OrganizationRecord]
            if all {
                records = try await OrganizationRepository(connection, logger: logger).list(memberUserID: nil)
            } else if caller.token != nil {
                records =
                    try await OrganizationRepository(connection, logger: logger).find(id: caller.orgID).map { [$0] }
                    ?? []
            } else {
                records = try await OrganizationRepository(connection, logger: logger).list(memberUserID: caller.userID)
            }
            var details: [Details] = []
            for record in records {
                details.append(
                    Details(
                        record: record,
                        scopes: try await OrganizationRepository(connection, logger: logger).scopeCatalog(
                            orgID: record.id))
                )
            }
            return details
        }
    }

    /// Every organization (operators at the database).
    public func all(logger: Logger) async throws -> [OrganizationRecord] {
        try await store.withConnection { try await OrganizationRepository($0, logger: logger).list(memberUserID: nil) }
    }

    /// One organization with its catalog.
    public func details(_ id: UUID, logger: Logger) async throws -> Details {
        try await store.withConnection { connection in
            guard let record = try await OrganizationRepository(connection, logger: logger).find(id: id) else {
                throw DomainError.notFound("Organization not found")
            }
            return Details(
                record: record,
                scopes: try await OrganizationRepository(connection, logger: logger).scopeCatalog(orgID: id))
        }
    }

    /// An organization by slug, outside any transaction.
    public func organization(slug: String) async throws -> OrganizationRecord? {
        try await store.withConnection { [logger = store.logger] in
            try await OrganizationRepository($0, logger: logger).find(slug: slug)
        }
    }

    /// Validates and applies a policy change in one transaction with its audit event: the same
    /// code for `PATCH /orgs/{org}` and the console's Policy page.
    public func applyPolicy(_ patch: OrganizationPatch, org: OrganizationRecord, actor: AuditActor, logger: Logger)
        async throws
    {
        try Self.validate(patch)
        do {
            try await store.transaction { connection in
                _ = try await OrganizationRepository(connection, logger: logger).update(id: org.id, patch: patch)
                let catalog = ScopeCatalog(
                    try await OrganizationRepository(connection, logger: logger).scopeCatalog(orgID: org.id))
                for scope in patch.defaultScopes ?? [] where catalog.entries[scope] == nil {
                    throw DomainError.invalid(
                        "Unknown scope: \(scope) is not in the catalog of organization \(org.slug)")
                }
                try await AuditRepository(connection, logger: logger).record(
                    actor.event(orgID: org.id, action: .orgPolicyUpdated))
                // A new group mapping settles every member at once (roles, suspensions, revocations).
                if patch.adminGroup != nil || patch.userGroup != nil,
                    let updated = try await OrganizationRepository(connection, logger: logger).find(id: org.id)
                {
                    try await MembershipSettlement.settle(
                        connection, org: updated, userIDs: nil, actor: actor, logger: logger)
                }
            }
            // Other replicas drop it on the `o:` notification; this one at once, listener or not.
            if patch.scopes != nil { store.catalogs.invalidate(org.id) }
        } catch let error as PSQLError where error.isCheckViolation {
            let reason =
                error.constraintName == "default_lifetime_within_max"
                ? "defaultTokenLifetimeDays must not exceed maxTokenLifetimeDays" : "a value is out of range"
            throw DomainError.invalid("Invalid policy: \(reason)")
        }
    }

    /// Deletes the organization and all its tokens; the audit event outlives it (org id kept).
    public func delete(_ org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws {
        try await store.transaction { connection in
            _ = try await OrganizationRepository(connection, logger: logger).delete(id: org.id)
            try await AuditRepository(connection, logger: logger).record(
                actor.event(orgID: org.id, action: .orgDeleted, details: ["slug": org.slug]))
        }
        // Nothing noted in the WriteJournal: every cached token of the org is concerned.
    }

    static func validate(_ patch: OrganizationPatch) throws(DomainError) {
        if let name = patch.displayName { try Limits.checkName(name, field: "displayName") }
        if let group = patch.apiGroup ?? nil { try Limits.checkName(group, field: "apiGroup") }
        if let group = patch.adminGroup ?? nil { try Limits.checkName(group, field: "adminGroup") }
        if let group = patch.userGroup ?? nil { try Limits.checkName(group, field: "userGroup") }
        for scope in patch.scopes ?? [] {
            do { try Limits.checkDescription(scope.description) } catch {
                throw .invalidField(
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
                throw .invalidField(field, "must be between 1 and 36500")
            }
        }
        if let limit = patch.personalTokenLimit, !(1...1000).contains(limit) {
            throw .invalidField("personalTokenLimit", "must be between 1 and 1000")
        }
        for scope in patch.scopes ?? [] where !Validation.isValidScopeName(scope.name) {
            throw .invalidField("scopes", "name \(scope.name) must match [a-z][a-z0-9_.:-]{0,63}")
        }
    }
}
