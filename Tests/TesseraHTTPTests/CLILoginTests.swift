import Foundation
import HTTPTypes
import HummingbirdTesting
import TesseraCore
import Testing

/// Browser login for command-line clients (issue #13): code, approval in the console, one token
/// delivered to the poll, then the code is spent; unknown codes, polling too fast, the limit.
@Suite struct CLILoginTests {
    @Test func aCodeApprovedInTheConsoleYieldsOneTokenOnce() async throws {
        try await TestApp.run { app, client in
            let asked = try await client.call(
                .get, "/api/v1/auth/code", headers: [.userAgent: "bentoml/1.4.39 <script>"])
            #expect(asked.status == .ok)
            let code = try #require(asked.string("code"))
            #expect(code.range(of: #"^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$"#, options: .regularExpression) != nil)
            // Not approved yet: 404, which the client reads as "not yet".
            #expect(try await client.call(.get, "/api/v1/auth/token?code=\(code)").status == .notFound)
            // A poll right after another is refused. The last poll is set an hour ahead, so the
            // next request falls within the 500 ms however long it takes to arrive (a loaded
            // full run once took over 500 ms between an UPDATE to now() and that request).
            try await app.store.client.query("UPDATE cli_login_codes SET last_poll_at = now() + interval '1 hour'")
            #expect(
                try await client.call(.get, "/api/v1/auth/token?code=\(code)").status == .tooManyRequests,
                "polled twice at once")

            // The page the client opens leads into the console, through sign-in, and back.
            let browser = CookieBrowser(client)
            let opened = try await browser.get("/api_tokens?code=\(code)")
            #expect(opened.status == .seeOther && opened.location == "/console/cli-login?code=\(code)")
            let toSignIn = try await browser.get(opened.location!)
            #expect(toSignIn.location?.hasPrefix("/console/sign-in?next=") == true)
            let form = try await browser.get(toSignIn.location!)
            #expect(form.text.contains(#"name="next" value="/console/cli-login?code=\#(code)""#))
            let signedIn = try await browser.post(
                "/console/sign-in",
                [
                    ("csrf", form.csrf ?? ""), ("token", app.root.token.plaintext),
                    ("next", "/console/cli-login?code=\(code)"),
                ])
            #expect(signedIn.location == "/console/cli-login?code=\(code)")
            let page = try await browser.get(signedIn.location!)
            #expect(
                page.status == .ok && page.text.contains(code) && page.text.contains("bentoml/1.4.39 &lt;script&gt;"))
            // The root already holds its one personal token (limit 1): the page says so, no approval.
            #expect(page.text.contains("the limit of this organization") && !page.text.contains(">Approve<"))
            #expect(
                try await client.call(
                    .patch, "/orgs/acme", token: app.root.token.plaintext, json: #"{"personalTokenLimit": 2}"#
                ).status == .ok)
            let again = try await browser.get(signedIn.location!)
            let approved = try await browser.post(
                "/console/cli-login",
                [("csrf", again.csrf ?? ""), ("code", code), ("name", "laptop cli"), ("decision", "approve")])
            #expect(approved.location == "/console/my-token")

            // as if polled a while ago
            try await app.store.client.query("UPDATE cli_login_codes SET last_poll_at = NULL")
            let delivered = try await client.call(.get, "/api/v1/auth/token?code=\(code)")
            #expect(
                delivered.status == .ok && delivered.string("name") == "laptop cli"
                    && delivered.string("username") == "root")
            let token = try #require(delivered.string("token"))
            #expect(try await app.store.verify(token).isSuccess)
            // as if polled a while ago
            try await app.store.client.query("UPDATE cli_login_codes SET last_poll_at = NULL")
            #expect(try await client.call(.get, "/api/v1/auth/token?code=\(code)").status == .notFound, "spent")
            #expect(
                !(try await app.store.client.values(
                    "SELECT count(*)::int FROM cli_login_codes WHERE spent_at IS NOT NULL", as: Int.self)).isEmpty)
            // Approved once: the code cannot be approved again.
            let reuse = try await browser.post(
                "/console/cli-login", [("csrf", again.csrf ?? ""), ("code", code), ("decision", "approve")])
            #expect(reuse.location == "/console/cli-login?code=\(code.replacingOccurrences(of: "-", with: ""))")
            // Garbage and unknown codes.
            #expect(try await client.call(.get, "/api/v1/auth/token?code=nope").status == .badRequest)
            #expect(try await client.call(.get, "/api/v1/auth/token?code=AAAA-AAAA-AAAA-AAAA").status == .notFound)
            // The audit trail has the approval.
            let actions = try await app.store.client.values(
                "SELECT action FROM audit_events ORDER BY id", as: String.self)
            #expect(actions.contains("cli_login.approved") && actions.last == "token.created")
        }
    }

    @Test func aDeniedOrExpiredCodeNeverYieldsAToken() async throws {
        try await TestApp.run { app, client in
            let code = try #require(try await client.call(.get, "/api/v1/auth/code").string("code"))
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let page = try await browser.get("/console/cli-login?code=\(code)")
            let denied = try await browser.post(
                "/console/cli-login", [("csrf", page.csrf ?? ""), ("code", code), ("decision", "deny")])
            #expect(denied.location == "/console/my-token")
            #expect(try await client.call(.get, "/api/v1/auth/token?code=\(code)").status == .notFound)
            let expired = try #require(try await client.call(.get, "/api/v1/auth/code").string("code"))
            try await app.store.client.query("UPDATE cli_login_codes SET expires_at = now() - interval '1 second'")
            let gone = try await browser.get("/console/cli-login?code=\(expired)")
            #expect(gone.status == .notFound && gone.text.contains("expired or already used"))
        }
    }
}
