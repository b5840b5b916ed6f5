import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

extension TesseraStore {
    /// Looks a presented string up: offline format check first (no database work for garbage),
    /// then one indexed lookup by SHA-256 joined with the owner's membership and user record, so
    /// a leaver's or a disabled user's token fails even if a cascade were ever missed.
    public func verify(_ presented: String) async throws -> Result<VerifiedToken, VerificationFailure> {
        let secret: TokenSecret
        do {
            secret = try TokenSecret(parsing: presented)
        } catch {
            return .failure(.malformed)
        }
        guard let state = try await storedState(of: secret.hash) else { return .failure(.unknown) }
        return state.verify(at: clock.now())
    }

    /// The stored facts about the token with this hash, or nil when there is none.
    public func storedState(of hash: TokenHash) async throws -> StoredTokenState? {
        let rows = try await client.query(
            """
            SELECT t.id, t.kind, t.org_id, o.slug, t.username, t.owner_user_id, m.role, m.groups,
                   coalesce(u.platform_admin, false), t.scopes, t.expires_at, t.created_at, t.status,
                   (m.user_id IS NOT NULL AND u.status = 'active')
            FROM tokens t
            JOIN organizations o ON o.id = t.org_id
            LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.owner_user_id
            LEFT JOIN users u ON u.id = t.owner_user_id
            WHERE t.secret_hash = \(ByteBuffer(bytes: hash.bytes))
            """,
            logger: logger
        )
        for try await row in rows {
            let (id, kind, orgID, slug, username, owner, role, groups, platformAdmin, scopes, expiresAt, createdAt, status, ownerActive) =
                try row.decode(
                    (UUID, String, UUID, String, String, UUID?, String?, [String]?, Bool, [String], Date?, Date, String, Bool).self
                )
            guard let kind = TokenKind(rawValue: kind), let status = TokenStatus(rawValue: status) else { return nil }
            let token = VerifiedToken(
                tokenID: id, kind: kind, orgID: orgID, orgSlug: slug, username: username, ownerUserID: owner,
                role: role.flatMap(MembershipRole.init(rawValue:)), groups: groups ?? [], platformAdmin: platformAdmin,
                scopes: scopes, expiresAt: expiresAt, createdAt: createdAt
            )
            return StoredTokenState(token: token, status: status, ownerIsActiveMember: ownerActive)
        }
        return nil
    }
}
