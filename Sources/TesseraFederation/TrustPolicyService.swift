import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraServices
import TesseraVerification
import TesseraWebhooks

/// What org admins do with trust policies (DESIGN §13), for the API, the console and the CLI:
/// validated, one transaction each with its audit event (and so its webhook).
public struct TrustPolicyService: Sendable {
    let store: TesseraStore
    let issuers: IssuerPolicy

    public init(store: TesseraStore, settings: FederationSettings) {
        self.store = store
        self.issuers = IssuerPolicy(allowHTTP: settings.allowHTTPIssuers)
    }

    public static let notFound = DomainError.notFound("Trust policy not found")

    /// A create, or a PATCH applied to the current policy: every field, checked as a whole.
    public struct Fields: Sendable {
        public var name: String
        public var issuer: String
        public var audience: String
        public var conditions: [String: String]
        public var scopes: [String]
        public var maxLifetimeSeconds: Int?
        public var label: String?

        public init(
            name: String, issuer: String, audience: String, conditions: [String: String], scopes: [String],
            maxLifetimeSeconds: Int? = nil, label: String? = nil
        ) {
            self.name = name
            self.issuer = issuer
            self.audience = audience
            self.conditions = conditions
            self.scopes = scopes
            self.maxLifetimeSeconds = maxLifetimeSeconds
            self.label = label
        }

        public init(_ record: TrustPolicyRecord) {
            self.init(
                name: record.name, issuer: record.issuer, audience: record.audience,
                conditions: record.conditions.patterns, scopes: record.scopes,
                maxLifetimeSeconds: record.maxLifetimeSeconds, label: record.label)
        }
    }

    /// A policy and its live tokens (what deleting it would revoke).
    public struct Listed: Sendable {
        public var policy: TrustPolicyRecord
        public var liveTokens: Int
    }

    public func list(org: OrganizationRecord, logger: Logger) async throws -> [Listed] {
        try await store.withConnection {
            try await TrustPolicyRepository($0, logger: logger).list(orgID: org.id).map {
                Listed(policy: $0.0, liveTokens: $0.live)
            }
        }
    }

    public func policy(_ id: UUID, org: OrganizationRecord, logger: Logger) async throws -> Listed {
        let found = try await store.withConnection { connection -> Listed? in
            let repository = TrustPolicyRepository(connection, logger: logger)
            guard let policy = try await repository.find(id: id, orgID: org.id) else { return nil }
            return Listed(policy: policy, liveTokens: try await repository.liveCounts(orgID: org.id)[id] ?? 0)
        }
        guard let found else { throw Self.notFound }
        return found
    }

    /// The policy's last exchanges, newest first.
    public func lastExchanges(_ id: UUID, org: OrganizationRecord, limit: Int = 10, logger: Logger) async throws
        -> [TokenRecord]
    {
        try await store.withConnection {
            try await TrustPolicyRepository($0, logger: logger).lastExchanges(policyID: id, orgID: org.id, limit: limit)
        }
    }

    public func create(_ fields: Fields, org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws
        -> TrustPolicyRecord
    {
        let draft = try await checked(fields, org: org, logger: logger)
        return try await unique {
            try await store.transaction { connection in
                let record = try await TrustPolicyRepository(connection, logger: logger).insert(
                    draft, orgID: org.id, createdBy: actor.username ?? "unknown")
                try await AuditRepository(connection, logger: logger).record(
                    actor.event(orgID: org.id, action: .trustPolicyCreated, details: Self.details(record)))
                return record
            }
        }
    }

    /// `change` maps the current fields to the new ones (a PATCH); the whole is checked again.
    public func update(
        _ id: UUID, org: OrganizationRecord, actor: AuditActor, logger: Logger,
        change: @Sendable (inout Fields) -> Void
    ) async throws -> TrustPolicyRecord {
        let current = try await policy(id, org: org, logger: logger).policy
        var fields = Fields(current)
        change(&fields)
        let draft = try await checked(fields, org: org, logger: logger)
        let updated = try await unique {
            try await store.transaction { connection -> TrustPolicyRecord? in
                guard
                    let record = try await TrustPolicyRepository(connection, logger: logger).replace(
                        id: id, orgID: org.id, with: draft)
                else { return nil }
                try await AuditRepository(connection, logger: logger).record(
                    actor.event(orgID: org.id, action: .trustPolicyUpdated, details: Self.details(record)))
                return record
            }
        }
        guard let updated else { throw Self.notFound }
        return updated
    }

    /// Deletes the policy and revokes the live tokens it issued (`trust_policy_deleted`), in one
    /// transaction; returns how many were revoked.
    public func delete(_ id: UUID, org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws -> Int {
        let revoked = try await store.transaction { connection -> [UUID]? in
            let policies = TrustPolicyRepository(connection, logger: logger)
            guard let record = try await policies.find(id: id, orgID: org.id) else { return nil }
            let tokens = try await policies.revokeIssued(
                byPolicy: id, orgID: org.id, reason: RevocationReason.trustPolicyDeleted)
            let audit = AuditRepository(connection, logger: logger)
            try await audit.record(
                actor.event(
                    orgID: org.id, action: .tokenRevoked, target: record.label,
                    details: ["reason": RevocationReason.trustPolicyDeleted, "trustPolicyId": Self.text(id)]),
                forEachOf: tokens.map(\.id))
            guard try await policies.delete(id: id, orgID: org.id) else { return nil }
            var details = Self.details(record)
            details["revokedTokens"] = String(tokens.count)
            try await audit.record(actor.event(orgID: org.id, action: .trustPolicyDeleted, details: details))
            return tokens.map(\.id)
        }
        guard let revoked else { throw Self.notFound }
        WriteJournal.note()
        for id in revoked { WriteJournal.note(.token(id)) }
        return revoked.count
    }

    // MARK: - Rules

    func checked(_ fields: Fields, org: OrganizationRecord, logger: Logger) async throws -> TrustPolicyDraft {
        try Limits.checkName(fields.name)
        let issuer = try issuers.check(fields.issuer)
        guard (1...255).contains(fields.audience.count),
            !fields.audience.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw DomainError.invalidField("audience", "must be 1 to 255 characters on one line") }
        let conditions = TrustConditions(fields.conditions)
        try conditions.validate()
        let lifetime = fields.maxLifetimeSeconds ?? FederationLimits.defaultLifetimeSeconds
        guard FederationLimits.lifetimeSeconds.contains(lifetime) else {
            throw DomainError.invalidField("maxLifetimeSeconds", "must be from 60 to 3600")
        }
        let label = fields.label ?? "ci"
        guard Validation.isValidUsername(label) else {
            throw DomainError.invalidField("label", "must be a service label: letters, digits and ._@+-")
        }
        let catalog = ScopeCatalog(
            try await store.withConnection {
                try await OrganizationRepository($0, logger: logger).scopeCatalog(orgID: org.id)
            })
        // Only admins manage policies: admin-only scopes are theirs to grant, as on organization tokens.
        let scopes = try TokenPolicy.scopes(
            fields.scopes, catalog: catalog, organization: org.slug, grantedByAdmin: true,
            ownPlatformAdminPersonalToken: false, organizationToken: true)
        return TrustPolicyDraft(
            name: fields.name, issuer: issuer, audience: fields.audience, conditions: conditions, scopes: scopes,
            maxLifetimeSeconds: lifetime, label: label)
    }

    /// Two policies of an org cannot share a name.
    func unique<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError where error.constraintName == "trust_policies_org_id_name_key" {
            throw DomainError.conflict("The organization already has a trust policy of that name")
        }
    }

    static func text(_ id: UUID) -> String { id.uuidString.lowercased() }

    /// What the audit trail and the webhooks say about a policy.
    static func details(_ record: TrustPolicyRecord) -> [String: String] {
        [
            "id": text(record.id), "name": record.name, "issuer": record.issuer, "audience": record.audience,
            "scopes": record.scopes.joined(separator: " "), "label": record.label,
            "maxLifetimeSeconds": String(record.maxLifetimeSeconds),
            "conditions": TrustPolicyRepository.json(record.conditions),
        ]
    }
}

/// Which issuers a policy may name: https URLs on public addresses (DESIGN §13), or http and
/// private ones when `TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS=true`. The address is checked again
/// at every fetch, on the address connected to.
struct IssuerPolicy: Sendable {
    let allowHTTP: Bool

    func check(_ issuer: String) throws(DomainError) -> String {
        guard issuer.count <= 2048, let url = URL(string: issuer), let scheme = url.scheme?.lowercased(),
            url.query == nil, url.fragment == nil, url.user == nil
        else { throw .invalidField("issuer", "must be an https URL without query or fragment") }
        guard scheme == "https" || (allowHTTP && scheme == "http") else {
            throw .invalidField(
                "issuer", "must be an https URL (http only with TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS=true)")
        }
        do {
            _ = try WebhookTargetPolicy(allowPrivate: allowHTTP).target(issuer)
        } catch {
            throw .invalidField(
                "issuer",
                error.description.replacingOccurrences(
                    of: "TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS", with: "TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS"))
        }
        return issuer
    }
}
