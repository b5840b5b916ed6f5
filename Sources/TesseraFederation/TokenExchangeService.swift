import Foundation
import Logging
import Metrics
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// RFC 8693 token exchange (DESIGN §13): a CI system's OIDC token, signed by a published key of
/// an issuer some trust policy of the org names, becomes a short-lived organization token. The
/// JWT id, the token and its audit event are one statement, so a replay (on any replica) and a
/// failure both leave nothing behind.
public struct TokenExchangeService: Sendable {
    let store: TesseraStore
    let keys: IssuerKeys

    init(store: TesseraStore, keys: IssuerKeys) {
        self.store = store
        self.keys = keys
    }

    public struct Request: Sendable {
        public var subjectToken: String
        /// The org's slug (`audience`).
        public var organization: String
        /// Space-separated scopes asked for; nil for all of the policy's.
        public var scope: String?
        public var sourceIP: String?
    }

    public struct Issued: Sendable {
        public var secret: TokenSecret
        public var tokenID: UUID
        public var expiresIn: Int
        public var scopes: [String]
        public var policy: TrustPolicyRecord
    }

    public func exchange(_ request: Request, logger: Logger) async throws -> Issued {
        do {
            let issued = try await attempt(request, logger: logger)
            Counter(label: "tessera_federation_exchanges_total", dimensions: [("outcome", "issued")]).increment()
            return issued
        } catch let refusal as ExchangeRefusal {
            Counter(label: "tessera_federation_exchanges_total", dimensions: [("outcome", refusal.error)]).increment()
            logger.info(
                "federation: exchange refused",
                metadata: [
                    "error": "\(refusal.error)", "reason": "\(refusal.description)", "org": "\(request.organization)",
                ])
            throw refusal
        }
    }

    private func attempt(_ request: Request, logger: Logger) async throws -> Issued {
        let token = try SubjectToken(request.subjectToken)
        let requested = try request.scope.map(Self.scopes)
        let found = try await store.withConnection {
            try await TrustPolicyRepository($0, logger: logger).candidates(
                orgSlug: request.organization, issuer: token.unverifiedIssuer)
        }
        // An unknown org and an org without a policy for this issuer answer alike.
        guard let (orgID, candidates) = found, !candidates.isEmpty else { throw ExchangeRefusal.noPolicy }
        let (key, collection) = try await keys.key(issuer: token.unverifiedIssuer, kid: token.kid)
        let claims = try await token.verified(with: key, in: collection)
        let now = store.clock.now()
        let (subject, jti, jwtExpires) = try claims.validate(issuer: token.unverifiedIssuer, now: now)
        let matching = candidates.filter { policy in
            claims.hasAudience(policy.audience) && policy.conditions.match { claims.text($0) }
        }
        guard !matching.isEmpty else { throw ExchangeRefusal.noPolicy }
        let policy = matching.first { policy in
            requested.map { Set($0).isSubset(of: Set(policy.scopes)) } ?? true
        }
        guard let policy else {
            throw ExchangeRefusal.scope("the requested scope is more than the trust policy grants")
        }
        let scopes = requested.map { Array(Set($0)).sorted() } ?? policy.scopes
        let secret = TokenSecret.generate(kind: .organization)
        let expires = now.addingTimeInterval(TimeInterval(policy.maxLifetimeSeconds))
        let origin = FederatedOrigin(
            trustPolicyID: policy.id, issuer: token.unverifiedIssuer, subject: subject, jti: jti)
        let row = NewTokenRow(
            orgID: orgID, kind: .organization, ownerUserID: nil, username: policy.label,
            name: String("\(policy.name): \(subject)".prefix(200)),
            description: String("Exchanged for an OIDC token of \(token.unverifiedIssuer)".prefix(1000)),
            scopes: scopes, groups: [], secret: secret, expiresAt: expires, createdAt: now,
            createdBy: String(subject.prefix(255)), createdByUserID: nil, federation: origin)
        let actor = AuditActor(username: String(subject.prefix(255)), kind: .federation, sourceIP: request.sourceIP)
        let details = [
            "kind": "organization", "name": row.name, "scopes": scopes.joined(separator: " "), "source": "federation",
            "trustPolicyId": policy.id.uuidString.lowercased(), "trustPolicy": policy.name,
            "issuer": origin.issuer, "subject": subject, "jti": jti,
        ]
        let id: UUID?
        do {
            id = try await store.withConnection {
                try await TrustPolicyRepository($0, logger: logger).issue(
                    row, jtiExpiresAt: jwtExpires,
                    audit: actor.event(orgID: orgID, action: .tokenCreated, target: row.username, details: details))
            }
        } catch let error as PSQLError where error.constraintName == "token_scopes_in_catalog" {
            throw ExchangeRefusal.scope("the trust policy grants scopes no longer in the organization's catalog")
        }
        guard let id else { throw ExchangeRefusal.grant("the subject token was already used (its jti is spent)") }
        logger.info(
            "federation: token issued",
            metadata: [
                "trust_policy": "\(policy.id)", "token": "\(id)", "subject": "\(subject)", "jti": "\(jti)",
            ])
        return Issued(
            secret: secret, tokenID: id, expiresIn: policy.maxLifetimeSeconds, scopes: scopes, policy: policy)
    }

    /// `scope`: space-separated names (RFC 6749 §3.3).
    static func scopes(_ text: String) throws(ExchangeRefusal) -> [String] {
        let names = text.split(separator: " ").map(String.init)
        guard !names.isEmpty, names.count <= 100, names.allSatisfy({ $0.count <= 64 }) else {
            throw .scope("scope must be 1 to 100 space-separated scope names")
        }
        return names
    }
}
