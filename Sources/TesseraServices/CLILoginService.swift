import Crypto
import Foundation
import Logging
import NIOCore
import TesseraCore
import TesseraPostgres

/// Browser login for command-line clients (DESIGN §9), as `bentoml cloud login` and
/// `tessera login --web` do it: the client asks for a code, opens `/api_tokens?code=CODE` in a
/// browser, where a signed-in person sees the code and the client and approves it, and polls.
/// The approved poll creates a personal token for that person in its own answer, so the secret is
/// never stored, and spends the code.
///
/// Codes: 16 characters of a 32-letter alphabet (80 bits), shown as `ABCD-EFGH-JKLM-NPQR`, stored
/// as their SHA-256, valid 10 minutes, single use; a code is polled at most twice a second.
public struct CLILoginService: Sendable {
    let store: TesseraStore
    public static let lifetime: TimeInterval = 600
    static let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")

    public init(store: TesseraStore) {
        self.store = store
    }

    /// Upper case, no separators; nil unless it can be a code.
    public static func normalize(_ text: String) -> String? {
        let letters = text.uppercased().filter { $0 != "-" && $0 != " " }
        guard letters.count == 16, letters.allSatisfy({ alphabet.contains($0) }) else { return nil }
        return letters
    }

    /// `ABCD-EFGH-JKLM-NPQR` from a normalized code.
    public static func display(_ normalized: String) -> String {
        let letters = Array(normalized)
        return stride(from: 0, to: letters.count, by: 4).map { String(letters[$0..<min($0 + 4, letters.count)]) }
            .joined(separator: "-")
    }

    static func hash(_ normalized: String) -> ByteBuffer { ByteBuffer(bytes: SHA256.hash(data: Data(normalized.utf8))) }

    /// A new code for `client` (its User-Agent, control characters dropped, 200 at most).
    public func start(client: String, sourceIP: String?) async throws -> String {
        var generator = SystemRandomNumberGenerator()
        let letters = (0..<16).map { _ in Self.alphabet[Int.random(in: 0..<Self.alphabet.count, using: &generator)] }
        let code = stride(from: 0, to: 16, by: 4).map { String(letters[$0..<$0 + 4]) }.joined(separator: "-")
        let client = String(client.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(200))
        try await store.withConnection { [logger = store.logger] in
            try await CLILoginRepository($0, logger: logger).insert(
                Self.hash(Self.normalize(code)!), client: client, sourceIP: sourceIP, lifetime: Self.lifetime)
        }
        return code
    }

    /// What the approval page shows about a normalized code (nil: unknown, expired or spent).
    public func pending(_ code: String, logger: Logger) async throws -> CLILoginRepository.Pending? {
        try await store.withConnection { try await CLILoginRepository($0, logger: logger).pending(Self.hash(code)) }
    }

    /// Approves the code for `userID` in `org`; false when it is unknown, expired, spent or
    /// already approved.
    public func approve(
        _ code: String, userID: UUID, org: OrganizationRecord, tokenName: String, actor: AuditActor, logger: Logger
    ) async throws -> Bool {
        try await store.transaction { connection in
            guard
                let client = try await CLILoginRepository(connection, logger: logger).approve(
                    Self.hash(code), userID: userID, orgID: org.id, tokenName: tokenName)
            else { return false }
            try await AuditRepository(connection, logger: logger).record(
                actor.event(orgID: org.id, action: .cliLoginApproved, details: ["client": client, "name": tokenName]))
            return true
        }
    }

    public func deny(_ code: String, logger: Logger) async throws {
        try await store.withConnection { try await CLILoginRepository($0, logger: logger).delete(Self.hash(code)) }
    }

    /// What a poll answers.
    public enum PollOutcome: Sendable {
        case unknown, tooFast, waiting
        /// The approver's new personal token (its secret shown once), in `org`.
        case issued(TokenService.Issued, org: OrganizationRecord, username: String)
    }

    /// Records a poll; once approved, creates the approver's personal token through the same
    /// operation as `POST /api-tokens` and spends the code (given back when the token cannot be
    /// made: the limit was reached meanwhile, the member left).
    public func poll(_ code: String, sourceIP: String?, logger: Logger) async throws -> PollOutcome {
        let hash = Self.hash(code)
        let poll = try await store.transaction { try await CLILoginRepository($0, logger: logger).poll(hash) }
        switch poll {
        case .unknown: return .unknown
        case .tooFast: return .tooFast
        case .waiting: return .waiting
        case .approved(let userID, let orgID, let name):
            do {
                return try await issue(userID: userID, orgID: orgID, name: name, sourceIP: sourceIP, logger: logger)
            } catch {
                try await store.withConnection { try await CLILoginRepository($0, logger: logger).unspend(hash) }
                throw error
            }
        }
    }

    private func issue(userID: UUID, orgID: UUID, name: String, sourceIP: String?, logger: Logger) async throws
        -> PollOutcome
    {
        let resolved = try await store.withConnection { connection -> (Caller, OrganizationRecord)? in
            guard let org = try await OrganizationRepository(connection, logger: logger).find(id: orgID),
                let membership = try await MembershipRepository(connection, logger: logger).acting(
                    orgID: orgID, userID: userID),
                let user = try await UserRepository(connection, logger: logger).find(username: membership.username),
                user.status == .active
            else { return nil }
            let caller = Caller(
                credential: .jwt, userID: userID, username: user.username, platformAdmin: user.platformAdmin,
                orgID: org.id, orgSlug: org.slug, role: membership.role, groups: membership.groups)
            return (caller, org)
        }
        guard let (caller, org) = resolved else {
            throw DomainError.forbidden("The approving user is no longer an active member")
        }
        let issued = try await TokenService(store: store).createOwn(
            .init(name: name), caller: caller, org: org,
            actor: AuditActor(username: caller.username, kind: .console, sourceIP: sourceIP), logger: logger)
        return .issued(issued, org: org, username: caller.username)
    }
}
