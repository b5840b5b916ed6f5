import Foundation
import Hummingbird
import TesseraAPI
import TesseraCore
import TesseraHTTP
import TesseraServices

/// Browser login for command-line clients (DESIGN §9, ``CLILoginService``):
/// `GET /api/v1/auth/code` and `GET /api/v1/auth/token?code=` (no credential), and
/// `GET /api_tokens?code=` (the page the client opens: on to the console).
struct CLILoginController {
    let logins: CLILoginService

    func addRoutes(to router: Router<TesseraRequestContext>) {
        router.get("api/v1/auth/code", use: code)
        router.get("api/v1/auth/token", use: token)
        router.get("api_tokens") { request, _ -> Response in
            guard let raw = request.uri.queryParameters.get("code"), let code = CLILoginService.normalize(raw) else {
                throw Problem(.badRequest, "code is missing or malformed: start the login again from your terminal")
            }
            return Response(
                status: .seeOther, headers: [.location: "/console/cli-login?code=\(CLILoginService.display(code))"])
        }
    }

    @Sendable func code(_ request: Request, context: TesseraRequestContext) async throws -> LoginCode {
        let code = try await logins.start(
            client: request.headers[.userAgent] ?? "unknown client", sourceIP: context.remoteAddress)
        return LoginCode(code: code, url: "/api_tokens?code=\(code)", expires_in: Int(CLILoginService.lifetime))
    }

    /// 404 until approved (clients poll on "not yet"), 429 when polled faster than twice a
    /// second; once approved, the new token, once.
    @Sendable func token(_ request: Request, context: TesseraRequestContext) async throws -> LoginIssued {
        guard let raw = request.uri.queryParameters.get("code"), let code = CLILoginService.normalize(raw) else {
            throw Problem(.badRequest, "code is missing or malformed")
        }
        switch try await logins.poll(code, sourceIP: context.remoteAddress, logger: context.logger) {
        case .unknown: throw Problem(.notFound, "No such login code, or it expired or was used")
        case .tooFast: throw Problem(.tooManyRequests, "Poll at most twice a second")
        case .waiting: throw Problem(.notFound, "Not approved yet: open the login page and approve the code")
        case .issued(let issued, let org, let username):
            return LoginIssued(
                token: issued.secret.plaintext, name: issued.record.name, organization: org.slug, username: username)
        }
    }
}
