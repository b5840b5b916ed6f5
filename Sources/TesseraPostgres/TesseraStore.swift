import Foundation
import Logging
import NIOCore
import PostgresNIO
import TesseraCore

/// The PostgreSQL side of Tessera: every write goes through ``transaction(_:)``, one transaction
/// per operation, so a failure part-way leaves nothing behind.
public struct TesseraStore: Sendable {
    public let client: PostgresClient
    public let logger: Logger
    public let clock: any WallClock
    /// How the verification statement is sent (`TESSERA_DB_STATEMENTS`).
    public let statements: StatementMode
    /// How long ``withConnection(_:)`` waits for a pooled connection before answering
    /// ``TimeoutError`` (nil: as long as the pool makes it wait).
    public let leaseTimeout: Duration?
    /// Scope catalogs, shared by every copy of this store (verification and token creation).
    public let catalogs = ScopeCatalogCache()

    public init(
        client: PostgresClient, logger: Logger, clock: any WallClock = SystemWallClock(),
        statements: StatementMode = .prepared, leaseTimeout: Duration? = .seconds(5)
    ) {
        self.client = client
        self.logger = logger
        self.clock = clock
        self.statements = statements
        self.leaseTimeout = leaseTimeout
    }

    /// Runs `body` in one transaction; rolls back when it throws and rethrows the error `body`
    /// threw, so callers can match domain and constraint errors. BEGIN, COMMIT and ROLLBACK are
    /// plain statements on the leased connection: PostgresNIO 1.33's `withTransaction` sends its
    /// ROLLBACK without a promise, and on a connection that just closed (a failover) the request
    /// then never got an answer (issue #15). Here a broken connection fails each statement at once.
    public func transaction<Result: Sendable>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await withConnection { connection in
            try await connection.statement("BEGIN", logger: logger)
            let result: Result
            do {
                result = try await body(connection)
            } catch {
                _ = try? await connection.statement("ROLLBACK", logger: logger)
                throw error
            }
            try await connection.statement("COMMIT", logger: logger)
            return result
        }
    }
}

/// The columns of a new token row. The secret contributes only its hash and display prefix.
public struct NewTokenRow: Sendable {
    public var orgID: UUID
    public var kind: TokenKind
    public var ownerUserID: UUID?
    public var username: String
    public var name: String
    public var description: String?
    public var scopes: [String]
    public var groups: [String]
    public var secret: TokenSecret
    public var expiresAt: Date?
    public var createdAt: Date
    public var createdBy: String
    public var createdByUserID: UUID?
    /// Set on a token exchanged under a trust policy.
    public var federation: FederatedOrigin?
    public var accessRules: [AccessRule] = []
    public var allowedCidrs: [AddressRange] = []

    public init(
        orgID: UUID, kind: TokenKind, ownerUserID: UUID?, username: String, name: String, description: String?,
        scopes: [String], groups: [String], secret: TokenSecret, expiresAt: Date?, createdAt: Date,
        createdBy: String, createdByUserID: UUID?, federation: FederatedOrigin? = nil
    ) {
        self.orgID = orgID
        self.kind = kind
        self.ownerUserID = ownerUserID
        self.username = username
        self.name = name
        self.description = description
        self.scopes = scopes
        self.groups = groups
        self.secret = secret
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.createdByUserID = createdByUserID
        self.federation = federation
    }
}

public enum AuditActorKind: String, Sendable {
    case token, jwt, cli, system, console, scim, federation
}

/// One line of the audit trail. `details` must never hold a secret.
public struct AuditEvent: Sendable {
    public var orgID: UUID?
    public var actorUsername: String?
    public var actorKind: AuditActorKind
    public var actorTokenID: UUID?
    public var action: AuditAction
    public var targetTokenID: UUID?
    public var targetUsername: String?
    public var sourceIP: String?
    public var details: [String: String]

    public init(
        orgID: UUID?, actorUsername: String?, actorKind: AuditActorKind, actorTokenID: UUID? = nil, action: AuditAction,
        targetTokenID: UUID? = nil, targetUsername: String? = nil, sourceIP: String? = nil,
        details: [String: String] = [:]
    ) {
        self.orgID = orgID
        self.actorUsername = actorUsername
        self.actorKind = actorKind
        self.actorTokenID = actorTokenID
        self.action = action
        self.targetTokenID = targetTokenID
        self.targetUsername = targetUsername
        self.sourceIP = sourceIP
        self.details = details
    }
}

extension AsyncSequence where Self: Sendable {
    /// The first element, or ``StoreError/noRows`` when there is none.
    func firstValue() async throws -> Element {
        for try await value in self { return value }
        throw StoreError.noRows
    }
}

public enum StoreError: Error, CustomStringConvertible {
    case noRows
    public var description: String { "the database returned no row where one was expected" }
}
