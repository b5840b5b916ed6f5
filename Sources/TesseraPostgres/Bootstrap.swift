import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

/// What `tessera bootstrap` made: shown once, then only the hash of the token remains.
public struct BootstrapResult: Sendable {
    public let organization: String
    public let username: String
    public let token: TokenSecret
    public let tokenUUID: UUID
    public let tokenExpiration: Date
}

public enum BootstrapError: Error, CustomStringConvertible, Equatable {
    case invalidSlug(String)
    case invalidUsername(String)
    case organizationExists(String)

    public var description: String {
        switch self {
        case .invalidSlug(let slug):
            "organization slug \"\(slug)\" is invalid: use 2-63 characters of a-z, 0-9 and -, starting with a letter or digit"
        case .invalidUsername(let username):
            "username \"\(username)\" is invalid: use 1-255 characters of A-Z, a-z, 0-9 and ._@+-, starting with a letter or digit"
        case .organizationExists(let slug):
            "organization \"\(slug)\" already exists; bootstrap runs once per organization"
        }
    }
}

extension TesseraStore {
    /// Creates the organization (with the built-in scope catalog), the user as a platform admin,
    /// an admin membership and a personal token holding every built-in scope, in one transaction.
    public func bootstrap(organization slug: String, displayName: String? = nil, admin username: String)
        async throws -> BootstrapResult
    {
        guard Validation.isValidSlug(slug) else { throw BootstrapError.invalidSlug(slug) }
        guard Validation.isValidUsername(username) else { throw BootstrapError.invalidUsername(username) }
        let secret = TokenSecret.generate(kind: .personal)
        let now = clock.now()
        do {
            return try await transaction { connection in
                let orgID = try await OrganizationRepository(connection, logger: logger).insert(
                    slug: slug, displayName: displayName ?? slug)
                let userID = try await UserRepository(connection, logger: logger).upsert(
                    username: username, platformAdmin: true)
                try await MembershipRepository(connection, logger: logger).put(
                    orgID: orgID, userID: userID, role: .admin, groups: [])
                let expiration = now.addingTimeInterval(90 * 86_400)
                let tokenID = try await TokenRepository(connection, logger: logger).insertAudited(
                    NewTokenRow(
                        orgID: orgID, kind: .personal, ownerUserID: userID, username: username,
                        name: "bootstrap", description: "Created by tessera bootstrap",
                        scopes: BuiltInScope.bootstrapScopes, groups: [],
                        secret: secret,
                        expiresAt: expiration, createdAt: now, createdBy: username, createdByUserID: userID
                    ),
                    audit: AuditEvent(
                        orgID: orgID, actorUsername: username, actorKind: .cli, action: .orgBootstrapped,
                        targetUsername: username), mode: statements
                ).id
                return BootstrapResult(
                    organization: slug, username: username, token: secret, tokenUUID: tokenID,
                    tokenExpiration: expiration)
            }
        } catch let error as PSQLError where error.isUniqueViolation && error.constraintName == "organizations_slug_key"
        {
            throw BootstrapError.organizationExists(slug)
        }
    }

    /// Does an organization with this slug exist?
    public func organizationExists(_ slug: String) async throws -> Bool {
        let rows = try await client.query("SELECT 1 FROM organizations WHERE slug = \(slug)", logger: logger)
        for try await _ in rows { return true }
        return false
    }
}
