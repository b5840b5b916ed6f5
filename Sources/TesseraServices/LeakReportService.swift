import Foundation
import Logging
import TesseraCore
import TesseraPostgres
import TesseraVerification

/// Leak reports (DESIGN §11, `POST /credentials/revoke` and `tessera scan --report`): every
/// well-formed token among the reported strings that is still live is revoked with reason
/// `leaked`, recorded in its org's audit trail and announced as `token.revoked` and
/// `token.leaked` webhooks (the outbox trigger), in one transaction.
public struct LeakReportService: Sendable {
    let store: TesseraStore
    private static let revoked = TesseraMetrics.counter("tessera_credentials_revoked_total")

    public init(store: TesseraStore) {
        self.store = store
    }

    /// Revokes the live tokens among `credentials`; the count of tokens revoked (which the API
    /// never tells the reporter). Only token-shaped strings (prefix, length, CRC-32) reach the
    /// database, as hashes.
    @discardableResult
    public func revoke(_ credentials: [String], sourceIP: String?, logger: Logger) async throws -> Int {
        let hashes = Array(Set(credentials.compactMap { try? TokenSecret(parsing: $0).hash }))
        guard !hashes.isEmpty else {
            WriteJournal.note()
            return 0
        }
        let tokens = try await store.transaction { connection in
            try await TokenRepository(connection, logger: logger).revokeLeaked(
                hashes, actor: AuditActor(username: "credentials/revoke", kind: .system, sourceIP: sourceIP))
        }
        Self.revoked.increment(by: Int64(tokens.count))
        for token in tokens { WriteJournal.note(.token(token)) }
        if !tokens.isEmpty {
            logger.warning(
                "revoked leaked tokens reported to /credentials/revoke", metadata: ["count": "\(tokens.count)"])
        }
        return tokens.count
    }
}
