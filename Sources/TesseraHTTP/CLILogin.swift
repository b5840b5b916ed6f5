import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import TesseraCore
import TesseraPostgres

/// Browser login for command-line clients (DESIGN §9), as `bentoml cloud login` and
/// `tessera login --web` do it: the client asks for a code (`GET /api/v1/auth/code`), opens
/// `/api_tokens?code=CODE` in a browser, where a signed-in person sees the code and the client and
/// approves it, and polls `GET /api/v1/auth/token?code=CODE`. The approved poll creates a personal
/// token for that person in its own answer, so the secret is never stored, and spends the code.
///
/// Codes: 16 characters of a 32-letter alphabet (80 bits), shown as `ABCD-EFGH-JKLM-NPQR`, stored
/// as their SHA-256, valid 10 minutes, single use; a code is polled at most twice a second.
enum CLILogin {
    static let lifetime: TimeInterval = 600
    static let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")

    static func newCode() -> String {
        var generator = SystemRandomNumberGenerator()
        let letters = (0..<16).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }
        return stride(from: 0, to: 16, by: 4).map { String(letters[$0..<$0 + 4]) }.joined(separator: "-")
    }

    /// Upper case, no separators; nil unless it can be a code.
    static func normalize(_ text: String) -> String? {
        let letters = text.uppercased().filter { $0 != "-" && $0 != " " }
        guard letters.count == 16, letters.allSatisfy({ alphabet.contains($0) }) else { return nil }
        return letters
    }

    /// `ABCD-EFGH-JKLM-NPQR` from a normalized code.
    static func display(_ normalized: String) -> String {
        let letters = Array(normalized)
        return stride(from: 0, to: letters.count, by: 4).map { String(letters[$0..<min($0 + 4, letters.count)]) }
            .joined(separator: "-")
    }

    static func hash(_ normalized: String) -> ByteBuffer { ByteBuffer(bytes: SHA256.hash(data: Data(normalized.utf8))) }

    /// What the approval page shows about a pending code.
    struct Pending: Sendable {
        let client: String
        let sourceIP: String?
        let createdAt: Date
        let approved: Bool
    }

    static func pending(_ code: String, client: PostgresClient, logger: Logger) async throws -> Pending? {
        let rows = try await TesseraStore(client: client, logger: logger).query(
            """
            SELECT client, host(source_ip), created_at, approved_at IS NOT NULL FROM cli_login_codes
            WHERE code_hash = \(hash(code)) AND expires_at > now() AND spent_at IS NULL
            """, logger: logger)
        guard let row = rows.first else { return nil }
        let (client, ip, created, approved) = try row.decode((String, String?, Date, Bool).self)
        return Pending(client: client, sourceIP: ip, createdAt: created, approved: approved)
    }

    /// Marks the code approved by `userID` for `org`; false when it is unknown, expired, spent or
    /// already approved.
    static func approve(
        _ code: String, userID: UUID, org: OrganizationRecord, tokenName: String, actor: AuditActor, store: TesseraStore
    )
        async throws -> Bool
    {
        try await store.transaction { connection in
            let rows = try await connection.statement(
                """
                UPDATE cli_login_codes SET approved_by = \(userID), org_id = \(org.id), token_name = \(tokenName), approved_at = now()
                WHERE code_hash = \(hash(code)) AND expires_at > now() AND spent_at IS NULL AND approved_at IS NULL
                RETURNING client
                """, logger: store.logger)
            for try await client in rows.decode(String.self) {
                try await connection.recordAudit(
                    actor.event(
                        orgID: org.id, action: .cliLoginApproved, details: ["client": client, "name": tokenName]),
                    logger: store.logger)
                return true
            }
            return false
        }
    }

    static func deny(_ code: String, store: TesseraStore) async throws {
        try await store.query(
            "DELETE FROM cli_login_codes WHERE code_hash = \(hash(code)) AND spent_at IS NULL", logger: store.logger)
    }
}

/// `GET /api/v1/auth/code` and `GET /api/v1/auth/token?code=` (no credential), and
/// `GET /api_tokens?code=` (the page the client opens: on to the console).
struct CLILoginController {
    let store: TesseraStore

    func addRoutes(to router: Router<TesseraRequestContext>) {
        router.get("api/v1/auth/code", use: code)
        router.get("api/v1/auth/token", use: token)
        router.get("api_tokens") { request, _ -> Response in
            guard let raw = request.uri.queryParameters.get("code"), let code = CLILogin.normalize(raw) else {
                throw Problem(.badRequest, "code is missing or malformed: start the login again from your terminal")
            }
            return Response(
                status: .seeOther, headers: [.location: "/console/cli-login?code=\(CLILogin.display(code))"])
        }
    }

    struct Code: ResponseEncodable {
        let code: String
        let url: String
        let expires_in: Int
    }

    @Sendable func code(_ request: Request, context: TesseraRequestContext) async throws -> Code {
        let code = CLILogin.newCode()
        let agent = String(
            (request.headers[.userAgent] ?? "unknown client").unicodeScalars.filter {
                $0.value >= 0x20 && $0.value != 0x7F
            }.prefix(200))
        try await store.query(
            """
            INSERT INTO cli_login_codes (code_hash, client, source_ip, expires_at)
            VALUES (\(CLILogin.hash(CLILogin.normalize(code)!)), \(agent), \(context.remoteAddress)::inet,
                    now() + make_interval(secs => \(CLILogin.lifetime)))
            """, logger: context.logger)
        try await store.query(
            "DELETE FROM cli_login_codes WHERE expires_at < now() - interval '1 day'", logger: context.logger)
        return Code(code: code, url: "/api_tokens?code=\(code)", expires_in: Int(CLILogin.lifetime))
    }

    struct Issued: ResponseEncodable {
        let token: String
        let name: String
        let organization: String
        let username: String
    }

    /// 404 until approved (clients poll on "not yet"), 429 when polled faster than twice a
    /// second; once approved, the new token, once.
    @Sendable func token(_ request: Request, context: TesseraRequestContext) async throws -> Issued {
        guard let raw = request.uri.queryParameters.get("code"), let code = CLILogin.normalize(raw) else {
            throw Problem(.badRequest, "code is missing or malformed")
        }
        let logger = context.logger
        enum Poll { case unknown, tooFast, waiting, approved(UUID, UUID, String) }
        let poll: Poll = try await store.transaction { connection in
            let rows = try await connection.statement(
                """
                SELECT coalesce(last_poll_at >= now() - interval '500 milliseconds', false), approved_by, org_id, token_name
                FROM cli_login_codes
                WHERE code_hash = \(CLILogin.hash(code)) AND expires_at > now() AND spent_at IS NULL
                FOR UPDATE
                """, logger: logger)
            var found: (Bool, UUID?, UUID?, String?)?
            for try await row in rows.decode((Bool, UUID?, UUID?, String?).self) { found = row }
            guard let (tooFast, user, org, name) = found else { return .unknown }
            if tooFast { return .tooFast }
            let approved = user != nil
            try await connection.statement(
                """
                UPDATE cli_login_codes SET last_poll_at = now(), spent_at = CASE WHEN \(approved) THEN now() END
                WHERE code_hash = \(CLILogin.hash(code))
                """, logger: logger)
            guard let user, let org, let name else { return .waiting }
            return .approved(user, org, name)
        }
        switch poll {
        case .unknown: throw Problem(.notFound, "No such login code, or it expired or was used")
        case .tooFast: throw Problem(.tooManyRequests, "Poll at most twice a second")
        case .waiting: throw Problem(.notFound, "Not approved yet: open the login page and approve the code")
        case .approved(let userID, let orgID, let name):
            do {
                return try await issue(userID: userID, orgID: orgID, name: name, context: context)
            } catch {
                // Not issued (the limit was reached meanwhile, the member left): the code is not spent.
                try await store.query(
                    "UPDATE cli_login_codes SET spent_at = NULL WHERE code_hash = \(CLILogin.hash(code))",
                    logger: logger)
                throw error
            }
        }
    }

    /// The approver's personal token, through the same operation as `POST /api-tokens`.
    func issue(userID: UUID, orgID: UUID, name: String, context: TesseraRequestContext) async throws -> Issued {
        let logger = context.logger
        let resolved = try await store.withConnection { connection -> (Caller, OrganizationRecord)? in
            guard let org = try await connection.organization(id: orgID, logger: logger),
                let membership = try await connection.membership(orgID: orgID, userID: userID, logger: logger),
                let user = try await connection.user(username: membership.username, logger: logger),
                user.status == .active
            else { return nil }
            let caller = Caller(
                credential: .jwt, userID: userID, username: user.username, platformAdmin: user.platformAdmin,
                orgID: org.id,
                orgSlug: org.slug, role: membership.role, groups: membership.groups)
            return (caller, org)
        }
        guard let (caller, org) = resolved else {
            throw Problem(.forbidden, "The approving user is no longer an active member")
        }
        let issued = try await TokenOperations(store: store).createOwn(
            .init(name: name), caller: caller, org: org,
            actor: AuditActor(username: caller.username, kind: .console, sourceIP: context.remoteAddress),
            logger: logger)
        return Issued(
            token: issued.secret.plaintext, name: issued.record.name, organization: org.slug, username: caller.username)
    }
}
