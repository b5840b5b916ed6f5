import Foundation
import Logging
import PostgresNIO
import TesseraCore

/// Who performs an operation, as the audit trail records it.
public struct AuditActor: Sendable {
    public var username: String?
    public var kind: AuditActorKind
    public var tokenID: UUID?
    public var sourceIP: String?

    public init(username: String?, kind: AuditActorKind, tokenID: UUID? = nil, sourceIP: String? = nil) {
        self.username = username
        self.kind = kind
        self.tokenID = tokenID
        self.sourceIP = sourceIP
    }

    /// An operator at the database (`tessera admin …`): the OS user, kind `cli`.
    public static func cli() -> AuditActor {
        AuditActor(username: ProcessInfo.processInfo.environment["USER"] ?? "operator", kind: .cli)
    }

    public func event(
        orgID: UUID?, action: AuditAction, token: UUID? = nil, target: String? = nil, details: [String: String] = [:]
    ) -> AuditEvent {
        AuditEvent(
            orgID: orgID, actorUsername: username, actorKind: kind, actorTokenID: tokenID, action: action,
            targetTokenID: token, targetUsername: target, sourceIP: sourceIP, details: details)
    }
}
