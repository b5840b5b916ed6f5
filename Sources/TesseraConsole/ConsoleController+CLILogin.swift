import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import Logging
import NIOCore
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraServices
import TesseraVerification
import TesseraWebhooks

/// The approval page of the browser login for command-line clients (DESIGN §9).
extension ConsoleController {
    // MARK: - Browser login for command-line clients

    /// The page `bentoml cloud login` and `tessera login --web` open: the code, which client asks,
    /// and an approval that creates a personal token for you (delivered to the client, once).
    @Sendable func cliLoginPage(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        guard let raw = request.uri.queryParameters.get("code"), let code = CLILoginService.normalize(raw) else {
            throw Problem(.badRequest, "This login link has no valid code. Start the login again from your terminal.")
        }
        guard let pending = try await logins.pending(code, logger: context.logger) else {
            throw Problem(
                .notFound,
                "This login code is unknown, expired or already used. Start the login again from your terminal.")
        }
        let live = try await store.withConnection { connection -> Int in
            try await TokenRepository(connection, logger: context.logger).list(
                orgID: user.org.id, visibleTo: user.caller.userID, all: false,
                query: TokenQuery(limit: 1000, kind: .personal)
            ).records.filter { $0.status != .revoked }.count
        }
        let atLimit = live >= user.org.personalTokenLimit
        let display = CLILoginService.display(code)
        return views.page(
            "cli-login",
            [
                "title": "Approve a command-line login", "code": display, "client": pending.client,
                "from": pending.sourceIP ?? "unknown",
                "asked": Self.format(pending.createdAt), "approved": pending.approved,
                "atLimit": atLimit && !pending.approved,
                "limit": user.org.personalTokenLimit,
                "mayCreate": user.caller.role != nil && (user.isAdmin || user.org.userTokensEnabled),
                "tokenName": "CLI login " + Self.format(store.clock.now()),
            ],
            user: user)
    }

    @Sendable func cliLogin(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        guard let code = context.form["code"].flatMap(CLILoginService.normalize) else {
            throw Problem(.badRequest, "No valid code")
        }
        let back = "/console/cli-login?code=" + code
        if context.form["decision"] == "deny" {
            try await logins.deny(code, logger: context.logger)
            flash(context, "The login was denied; the code no longer works.")
            throw ConsoleRedirect(location: "/console/my-token")
        }
        let name = context.form.text("name") ?? "CLI login"
        try await flashing(context, back: back) {
            try Limits.checkName(name, field: "Name")
            guard let userID = user.caller.userID, user.caller.role != nil else {
                throw Problem(
                    .forbidden, "You are not a member of \(user.org.slug): switch to an organization of yours")
            }
            guard
                try await logins.approve(
                    code, userID: userID, org: user.org, tokenName: name, actor: context.actor, logger: context.logger)
            else {
                throw Problem(
                    .notFound,
                    "This login code is unknown, expired or already used. Start the login again from your terminal.")
            }
        }
        flash(
            context,
            "Approved. Your terminal receives a new personal token “\(name)” in \(user.org.slug); you can close this page."
        )
        throw ConsoleRedirect(location: "/console/my-token")
    }
}
