import Foundation
import Logging
import PostgresNIO
import TesseraCore

/// What a trust policy is made of, for an insert or a replacement.
public struct TrustPolicyDraft: Sendable {
    public var name: String
    public var issuer: String
    public var audience: String
    public var conditions: TrustConditions
    public var scopes: [String]
    public var maxLifetimeSeconds: Int
    public var label: String

    public init(
        name: String, issuer: String, audience: String, conditions: TrustConditions, scopes: [String],
        maxLifetimeSeconds: Int, label: String
    ) {
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.conditions = conditions
        self.scopes = scopes
        self.maxLifetimeSeconds = maxLifetimeSeconds
        self.label = label
    }
}

/// An org's trust policies (`trust_policies`, migration 0011), and what the exchange writes: the
/// JWT ids it has used and the tokens it issues.
public struct TrustPolicyRepository {
    let connection: PostgresConnection
    let logger: Logger

    public init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    static let columns = """
        p.id, p.org_id, p.name, p.issuer, p.audience, p.conditions::text, p.scopes, p.max_lifetime_seconds, p.label,
        p.created_at, p.updated_at, p.created_by
        """

    private func records(_ query: PostgresQuery) async throws -> [TrustPolicyRecord] {
        var records: [TrustPolicyRecord] = []
        for try await row in try await connection.statement(query, logger: logger) {
            let cells = row.makeRandomAccess()
            let conditions = try JSONDecoder().decode(
                [String: String].self, from: Data(try cells[5].decode(String.self).utf8))
            records.append(
                TrustPolicyRecord(
                    id: try cells[0].decode(UUID.self), orgID: try cells[1].decode(UUID.self),
                    name: try cells[2].decode(String.self), issuer: try cells[3].decode(String.self),
                    audience: try cells[4].decode(String.self), conditions: TrustConditions(conditions),
                    scopes: try cells[6].decode([String].self),
                    maxLifetimeSeconds: Int(try cells[7].decode(Int32.self)),
                    label: try cells[8].decode(String.self), createdAt: try cells[9].decode(Date.self),
                    updatedAt: try cells[10].decode(Date.self), createdBy: try cells[11].decode(String.self)))
        }
        return records
    }

    public static func json(_ conditions: TrustConditions) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: (try? encoder.encode(conditions.patterns)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The org's policies by name, each with its live tokens' count.
    public func list(orgID: UUID) async throws -> [(TrustPolicyRecord, live: Int)] {
        let policies = try await records(
            "SELECT \(unescaped: Self.columns) FROM trust_policies p WHERE p.org_id = \(orgID) ORDER BY p.name")
        let counts = try await liveCounts(orgID: orgID)
        return policies.map { ($0, counts[$0.id] ?? 0) }
    }

    public func find(id: UUID, orgID: UUID) async throws -> TrustPolicyRecord? {
        try await records(
            "SELECT \(unescaped: Self.columns) FROM trust_policies p WHERE p.id = \(id) AND p.org_id = \(orgID)"
        ).first
    }

    /// The policies of the org `slug` that trust `issuer` (what an exchange considers), oldest
    /// first; with the org's id, nil when there is no such org.
    public func candidates(orgSlug slug: String, issuer: String) async throws -> (UUID, [TrustPolicyRecord])? {
        let rows = try await connection.statement("SELECT id FROM organizations WHERE slug = \(slug)", logger: logger)
        var orgID: UUID?
        for try await id in rows.decode(UUID.self) { orgID = id }
        guard let orgID else { return nil }
        let policies = try await records(
            """
            SELECT \(unescaped: Self.columns) FROM trust_policies p
            WHERE p.org_id = \(orgID) AND p.issuer = \(issuer) ORDER BY p.created_at, p.id
            """)
        return (orgID, policies)
    }

    /// Live (unrevoked, unexpired) tokens per policy of the org.
    public func liveCounts(orgID: UUID) async throws -> [UUID: Int] {
        let rows = try await connection.statement(
            """
            SELECT trust_policy_id, count(*)::bigint FROM tokens
            WHERE org_id = \(orgID) AND source = 'federation' AND status <> 'revoked' AND expires_at > now()
            GROUP BY trust_policy_id
            """, logger: logger)
        var counts: [UUID: Int] = [:]
        for try await (id, count) in rows.decode((UUID, Int64).self) { counts[id] = Int(count) }
        return counts
    }

    public func insert(_ draft: TrustPolicyDraft, orgID: UUID, createdBy: String) async throws -> TrustPolicyRecord {
        let inserted = try await records(
            """
            INSERT INTO trust_policies AS p (org_id, name, issuer, audience, conditions, scopes, max_lifetime_seconds,
                                             label, created_by)
            VALUES (\(orgID), \(draft.name), \(draft.issuer), \(draft.audience), \(Self.json(draft.conditions))::jsonb,
                    \(draft.scopes), \(Int32(draft.maxLifetimeSeconds)), \(draft.label), \(createdBy))
            RETURNING \(unescaped: Self.columns)
            """)
        guard let record = inserted.first else { throw StoreError.noRows }
        return record
    }

    /// Replaces every field but the id; nil when the policy is not in the org.
    public func replace(id: UUID, orgID: UUID, with draft: TrustPolicyDraft) async throws -> TrustPolicyRecord? {
        try await records(
            """
            UPDATE trust_policies AS p SET name = \(draft.name), issuer = \(draft.issuer), audience = \(draft.audience),
                conditions = \(Self.json(draft.conditions))::jsonb, scopes = \(draft.scopes),
                max_lifetime_seconds = \(Int32(draft.maxLifetimeSeconds)), label = \(draft.label), updated_at = now()
            WHERE p.id = \(id) AND p.org_id = \(orgID)
            RETURNING \(unescaped: Self.columns)
            """
        ).first
    }

    public func delete(id: UUID, orgID: UUID) async throws -> Bool {
        let rows = try await connection.statement(
            "DELETE FROM trust_policies WHERE id = \(id) AND org_id = \(orgID) RETURNING id", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// The last tokens the policy issued, newest first.
    public func lastExchanges(policyID: UUID, orgID: UUID, limit: Int) async throws -> [TokenRecord] {
        let rows = try await connection.statement(
            """
            SELECT \(unescaped: TokenRepository.tokenColumns)
            FROM tokens t JOIN organizations o ON o.id = t.org_id
            WHERE t.trust_policy_id = \(policyID) AND t.org_id = \(orgID)
            ORDER BY t.created_at DESC LIMIT \(limit)
            """, logger: logger)
        var records: [TokenRecord] = []
        for try await row in rows { records.append(try TokenRepository.tokenRecord(row)) }
        return records
    }

    /// What an exchange writes, in one statement (so one transaction): the JWT id claimed, the
    /// token, its audit event. Nil when the JWT id was already used (a replay): nothing written.
    /// The `token.created` webhook follows from the audit event (its trigger).
    public func issue(_ row: NewTokenRow, jtiExpiresAt: Date, audit: AuditEvent) async throws -> UUID? {
        guard let origin = row.federation else { throw StoreError.noRows }
        let rows = try await connection.statement(
            """
            WITH claimed AS (
                INSERT INTO federation_jtis (issuer, jti, expires_at)
                VALUES (\(origin.issuer), \(origin.jti), \(jtiExpiresAt))
                ON CONFLICT DO NOTHING
                RETURNING 1
            ), token AS (
                INSERT INTO tokens (\(unescaped: TokenRepository.insertColumns))
                SELECT \(newToken: row) FROM claimed
                RETURNING id
            ), audit AS (
                INSERT INTO audit_events (\(unescaped: AuditRepository.columns))
                SELECT \(audit: audit, targetToken: "id") FROM token
            )
            SELECT id FROM token
            """, logger: logger)
        for try await id in rows.decode(UUID.self) { return id }
        return nil
    }

    /// Revokes the live tokens exchanged under trust policy `policyID` (its deletion); returns
    /// their ids and labels, for audit events and cache invalidation.
    public func revokeIssued(byPolicy policyID: UUID, orgID: UUID, reason: String) async throws
        -> [(id: UUID, username: String)]
    {
        let rows = try await connection.statement(
            """
            UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = \(reason), updated_at = now()
            WHERE trust_policy_id = \(policyID) AND org_id = \(orgID) AND status <> 'revoked'
            RETURNING id, username
            """, logger: logger)
        var revoked: [(id: UUID, username: String)] = []
        for try await row in rows.decode((UUID, String).self) { revoked.append(row) }
        return revoked
    }

    /// Deletes up to `limit` exchanged tokens that expired before `before`; returns how many.
    public func purgeExchanged(expiredBefore before: Date, limit: Int) async throws -> Int {
        let rows = try await connection.statement(
            """
            WITH gone AS (
                DELETE FROM tokens WHERE id IN (
                    SELECT id FROM tokens
                    WHERE source = 'federation' AND expires_at < \(before)
                    LIMIT \(limit))
                RETURNING 1)
            SELECT count(*)::bigint FROM gone
            """, logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    /// Forgets JWT ids whose tokens expired before `before` (they can no longer be replayed).
    public func purgeJTIs(expiredBefore before: Date) async throws -> Int {
        let rows = try await connection.statement(
            """
            WITH gone AS (DELETE FROM federation_jtis WHERE expires_at < \(before) RETURNING 1)
            SELECT count(*)::bigint FROM gone
            """, logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }
}
