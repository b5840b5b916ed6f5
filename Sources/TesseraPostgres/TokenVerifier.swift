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
                   (m.user_id IS NOT NULL AND u.status = 'active'), o.idle_timeout_days, t.last_used_at, t.grace_until
            FROM tokens t
            JOIN organizations o ON o.id = t.org_id
            LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.owner_user_id
            LEFT JOIN users u ON u.id = t.owner_user_id
            WHERE t.secret_hash = \(ByteBuffer(bytes: hash.bytes))
            """,
            logger: logger
        )
        for try await row in rows {
            let cells = row.makeRandomAccess()
            guard let kind = TokenKind(rawValue: try cells[1].decode(String.self)),
                let status = TokenStatus(rawValue: try cells[12].decode(String.self))
            else { return nil }
            let token = VerifiedToken(
                tokenID: try cells[0].decode(UUID.self), kind: kind, orgID: try cells[2].decode(UUID.self),
                orgSlug: try cells[3].decode(String.self), username: try cells[4].decode(String.self),
                ownerUserID: try cells[5].decode(UUID?.self),
                role: try cells[6].decode(String?.self).flatMap(MembershipRole.init(rawValue:)),
                groups: try cells[7].decode([String]?.self) ?? [], platformAdmin: try cells[8].decode(Bool.self),
                scopes: try cells[9].decode([String].self), expiresAt: try cells[10].decode(Date?.self),
                createdAt: try cells[11].decode(Date.self)
            )
            return StoredTokenState(
                token: token, status: status, ownerIsActiveMember: try cells[13].decode(Bool.self),
                idleTimeoutDays: try cells[14].decode(Int?.self), lastUsedAt: try cells[15].decode(Date?.self),
                graceUntil: try cells[16].decode(Date?.self))
        }
        return nil
    }
}
