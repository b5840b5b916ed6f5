import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

/// A browser without a browser: keeps cookies between requests made through HummingbirdTesting.
final class CookieBrowser: @unchecked Sendable {
    let client: any TestClientProtocol
    var cookies: [String: String] = [:]
    /// Every `Set-Cookie` line received, for checking attributes.
    private(set) var setCookieLines: [String] = []

    init(_ client: any TestClientProtocol) { self.client = client }

    struct Page {
        let status: HTTPResponse.Status
        let headers: HTTPFields
        let text: String
        var location: String? { headers[.location] }
        /// The first CSRF token of the page's forms.
        var csrf: String? {
            guard let range = text.range(of: #"name="csrf" value="[^"]*""#, options: .regularExpression) else {
                return nil
            }
            return String(text[range].dropFirst(#"name="csrf" value=""#.count).dropLast())
        }
    }

    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> Page {
        try await send(.get, uri, body: nil, headers: headers)
    }

    func post(_ uri: String, _ form: [(String, String)], headers: HTTPFields = [:]) async throws -> Page {
        let body = form.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&")
        var headers = headers
        headers[.contentType] = "application/x-www-form-urlencoded"
        return try await send(.post, uri, body: body, headers: headers)
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? ""
    }

    private func send(_ method: HTTPRequest.Method, _ uri: String, body: String?, headers: HTTPFields) async throws
        -> Page
    {
        var headers = headers
        if !cookies.isEmpty { headers[.cookie] = cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
        return try await client.execute(
            uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }
        ) {
            response in
            for line in response.headers[values: .setCookie] {
                self.setCookieLines.append(line)
                let pair = line.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                let name = String(pair[0])
                let expired = line.range(of: #"Expires=[^;]*"#, options: .regularExpression).map { range -> Bool in
                    let formatter = DateFormatter()
                    formatter.locale = Locale(identifier: "en_US_POSIX")
                    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
                    return formatter.date(from: String(line[range].dropFirst(8))).map { $0 <= Date() } ?? false
                }
                if expired == true || pair.count < 2 {
                    self.cookies[name] = nil
                } else {
                    self.cookies[name] = String(pair[1])
                }
            }
            return Page(status: response.status, headers: response.headers, text: String(buffer: response.body))
        }
    }

    /// Signs in with `token` through the sign-in form.
    @discardableResult
    func signIn(_ token: String) async throws -> Page {
        let form = try await get("/console/sign-in")
        return try await post("/console/sign-in", [("csrf", form.csrf ?? ""), ("token", token)])
    }
}

/// The console over HTTP, without a browser (issue #12): sessions, CSRF, headers, cookie flags,
/// session ends, escaping, the secret shown once, and the same operations as the API.
@Suite struct ConsoleTests {
    func sessionRows(_ app: TestApp) async throws -> [String] {
        try await app.store.client.values("SELECT data::text FROM console_sessions", as: String.self)
    }

    @Test func signInSetsAStrictSessionAndEveryPageSendsTheSecurityHeaders() async throws {
        try await TestApp.run { app, client in
            let browser = CookieBrowser(client)
            let form = try await browser.get("/console/sign-in")
            #expect(form.status == .ok && form.text.contains(#"<label for="token">API token</label>"#))
            let signedIn = try await browser.signIn(app.root.token.plaintext)
            #expect(signedIn.status == .seeOther && signedIn.location == "/console/my-token")
            let session = try #require(browser.setCookieLines.first { $0.hasPrefix("tessera_session=") })
            #expect(
                session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/console"))
            #expect(!session.contains("Secure"), "plain http on loopback")

            for path in [
                "/console/my-token", "/console/org-tokens", "/console/members", "/console/policy", "/console/audit",
            ] {
                let page = try await browser.get(path)
                #expect(page.status == .ok, "\(path): \(page.status)")
                let policy = page.headers[.contentSecurityPolicy] ?? ""
                #expect(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "\(path)")
                #expect(!policy.contains("unsafe-inline"))
                #expect(page.headers[.xContentTypeOptions] == "nosniff")
                #expect(page.headers[.cacheControl] == "no-store")
                #expect(page.headers[HTTPField.Name("Referrer-Policy")!] == "same-origin")
                #expect(!page.text.contains("<script>"), "no inline script")
            }
            // The stored session: a hash of the id as key, no token secret anywhere in it.
            let rows = try await sessionRows(app)
            #expect(rows.count == 1)
            #expect(!rows[0].containsTokenSecret && rows[0].contains(app.root.token.hash.hex))
            let keys = try await app.store.client.values(
                "SELECT encode(key_hash, 'hex') FROM console_sessions", as: String.self)
            #expect(!keys[0].contains(browser.cookies["tessera_session"] ?? "-"))
            // Static files come with the binary.
            #expect(
                try await browser.get("/console/static/console.css").headers[.contentType] == "text/css; charset=utf-8")
            // An unknown console path is a page, not a problem document.
            let missing = try await browser.get("/console/no/such/page")
            #expect(missing.status == .notFound && missing.headers[.contentType] == "text/html; charset=utf-8")
            #expect(missing.text.contains("There is no such page in the console."))
            // A browser opening / lands in the console.
            let home = try await browser.get("/", headers: [.accept: "text/html"])
            #expect(home.status == .seeOther && home.location == "/console/")
        }
    }

    @Test func everyStateChangeNeedsTheCSRFTokenAndTheSameOrigin() async throws {
        try await TestApp.run { app, client in
            let browser = CookieBrowser(client)
            // Sign-in without the form's double-submit cookie: refused.
            let bare = CookieBrowser(client)
            #expect(try await bare.post("/console/sign-in", [("token", app.root.token.plaintext)]).status == .forbidden)
            try await browser.signIn(app.root.token.plaintext)
            let csrf = try #require(try await browser.get("/console/my-token").csrf)
            let create = [("name", "x"), ("csrf", csrf)]
            let missing = try await browser.post("/console/org-tokens", [("label", "ci"), ("name", "x")])
            #expect(
                missing.status == .forbidden && missing.text.contains("This form expired or came from another site"))
            #expect(
                try await browser.post("/console/org-tokens", [("label", "ci"), ("name", "x"), ("csrf", csrf + "x")])
                    .status == .forbidden)
            #expect(
                try await browser.post(
                    "/console/org-tokens", [("label", "ci")] + create, headers: [.origin: "http://evil.example"]
                ).status == .forbidden)
            #expect(
                try await browser.post("/console/org-tokens", [("label", "ci")] + create, headers: [.origin: "null"])
                    .status == .forbidden)
            #expect(
                try await browser.post(
                    "/console/org-tokens", [("label", "ci")] + create,
                    headers: [HTTPField.Name("Sec-Fetch-Site")!: "cross-site"]
                )
                .status == .forbidden)
            // Nothing was written by the refused posts.
            let count = try await app.store.client.values(
                "SELECT count(*)::int FROM tokens WHERE kind = 'organization'", as: Int.self)
            #expect(count == [0])
            // The right token from this origin works (the test client's authority is empty: no Origin check applies).
            let made = try await browser.post("/console/org-tokens", [("label", "ci")] + create)
            #expect(made.status == .ok && made.text.contains("tso_"))
        }
    }

    @Test func theSecretIsShownOnceAndNeverStoredAndNamesAreEscaped() async throws {
        try await TestApp.run { app, client in
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let csrf = try #require(try await browser.get("/console/org-tokens").csrf)
            let name = #"<img src=x onerror=alert(1)>"#
            let created = try await browser.post(
                "/console/org-tokens",
                [("csrf", csrf), ("label", "ci-deploy"), ("name", name), ("expires", "30"), ("scopes", "api:read")])
            #expect(created.status == .ok)
            #expect(created.headers[.cacheControl] == "no-store")
            let secret = try #require(
                created.text.range(of: #"tso_[0-9a-f]{128}"#, options: .regularExpression).map {
                    String(created.text[$0])
                })
            #expect(created.text.contains("I have securely saved this token"))
            #expect(created.text.contains("&lt;img src=x onerror=alert(1)&gt;") && !created.text.contains(name))
            // Not in the session, not in a later page, and it works.
            #expect(try await sessionRows(app).allSatisfy { !$0.containsTokenSecret })
            let list = try await browser.get("/console/org-tokens")
            #expect(!list.text.containsTokenSecret && list.text.contains("&lt;img src=x onerror=alert(1)&gt;"))
            #expect(try await app.store.verify(secret).isSuccess)
            // The audit trail names the console as the actor kind.
            let kinds = try await app.store.client.values(
                "SELECT actor_kind FROM audit_events WHERE action = 'token.created' AND target_username = 'ci-deploy'",
                as: String.self)
            #expect(kinds == ["console"])
        }
    }

    @Test func signOutDeletesTheSessionAndSignInRotatesIt() async throws {
        try await TestApp.run { app, client in
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let first = try #require(browser.cookies["tessera_session"])
            // Signing in while holding a session cookie (fixation): a new id, the old row gone.
            let other = CookieBrowser(client)
            let form = try await other.get("/console/sign-in")
            other.cookies["tessera_session"] = first
            let again = try await other.post(
                "/console/sign-in", [("csrf", form.csrf ?? ""), ("token", app.root.token.plaintext)])
            #expect(again.location == "/console/my-token")
            #expect(other.cookies["tessera_session"] != first)
            #expect(try await sessionRows(app).count == 1)
            #expect(try await browser.get("/console/my-token").location == "/console/sign-in?next=/console/my-token")
            browser.cookies = other.cookies
            let stolen = try #require(browser.cookies["tessera_session"])
            let csrf = try #require(try await browser.get("/console/my-token").csrf)
            let out = try await browser.post("/console/sign-out", [("csrf", csrf)])
            #expect(out.status == .seeOther && out.location == "/console/sign-in?ended=signed-out")
            #expect(try await sessionRows(app).isEmpty)
            // The old cookie no longer opens anything.
            let replay = try await client.execute(
                uri: "/console/my-token", method: .get, headers: [.cookie: "tessera_session=\(stolen)"]
            ) {
                $0
            }
            #expect(
                replay.status == .seeOther && replay.headers[.location] == "/console/sign-in?next=/console/my-token")
        }
    }

    @Test func aSessionEndsWhenItsTokenStopsVerifyingOrItExpires() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("bob")
            let bobToken = try await client.call(
                .post, "/api-tokens/bob", token: app.root.token.plaintext, json: #"{"name": "bob laptop"}"#)
            let secret = try #require(bobToken.string("token"))
            let browser = CookieBrowser(client)
            #expect(try await browser.signIn(secret).location == "/console/my-token")
            #expect(try await browser.get("/console/my-token").status == .ok)
            // Deactivated through the API: bob's next page is the sign-in page, and the row is gone.
            let id = try #require(bobToken.string("tokenUUID"))
            #expect(
                try await client.call(
                    .patch, "/api-tokens/\(id)", token: app.root.token.plaintext, json: #"{"status": "inactive"}"#
                ).status == .ok)
            let ended = try await browser.get("/console/my-token")
            #expect(ended.status == .seeOther && ended.location == "/console/sign-in?ended=token")
            #expect(
                try await browser.get(ended.location!).text.contains("the token you signed in with no longer works"))
            #expect(try await sessionRows(app).isEmpty)

            // Idle expiry: a row past its expiry is not a session.
            let admin = CookieBrowser(client)
            try await admin.signIn(app.root.token.plaintext)
            try await app.store.client.query("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
            #expect(try await admin.get("/console/my-token").location == "/console/sign-in?next=/console/my-token")
            // Absolute lifetime: signed in 13 hours ago.
            try await admin.signIn(app.root.token.plaintext)
            try await app.store.client.query(
                "UPDATE console_sessions SET data = jsonb_set(data, '{signedInAt}', to_jsonb(extract(epoch FROM now() - interval '13 hours') - 978307200))"
            )
            #expect(try await admin.get("/console/my-token").location == "/console/sign-in?ended=expired")
        }
    }

    @Test func consoleChangesAreTheAPIsOperations() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("carol", groups: ["dev"])
            let carolToken = try #require(
                try await client.call(
                    .post, "/api-tokens/carol", token: app.root.token.plaintext, json: #"{"name": "carol"}"#
                ).string("token"))
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let csrf = try #require(try await browser.get("/console/members").csrf)
            // Removing carol revokes her personal token in the same transaction.
            let confirm = try await browser.get("/console/members/carol/remove")
            #expect(confirm.text.contains("1 active personal token(s) in this organization will be revoked"))
            let removed = try await browser.post("/console/members/carol/remove", [("csrf", csrf)])
            #expect(removed.location == "/console/members")
            #expect(try await app.store.verify(carolToken).failureValue == .revoked)
            #expect(try await browser.get("/console/members").text.contains("carol was removed"))
            // A redirect target from the form is only ever a console path.
            let mine = try await browser.get("/console/my-token")
            let id = try #require(
                mine.text.range(of: #"/console/tokens/[0-9a-f-]{36}/status"#, options: .regularExpression)
                    .map { String(mine.text[$0].dropFirst(16).prefix(36)) })
            let away = try await browser.post(
                "/console/tokens/\(id)/status", [("csrf", csrf), ("status", "active"), ("back", "//evil.example/x")])
            #expect(away.location == "/console/my-token")
            // Policy through the console: a cap lowers the default, as over the API.
            let saved = try await browser.post(
                "/console/policy",
                [
                    ("csrf", csrf), ("displayName", "Acme"), ("defaultDays", "90"), ("maxDays", "30"),
                    ("userTokensEnabled", "on"),
                    ("defaultScopes", "api:read"),
                ])
            #expect(saved.location == "/console/policy")
            let org = try await client.call(.get, "/orgs/acme", token: app.root.token.plaintext)
            #expect(
                org.json["maxTokenLifetimeDays"] as? Int == 30 && org.json["defaultTokenLifetimeDays"] as? Int == 30)
            let audit = try await browser.get("/console/audit?action=org.policy_updated")
            #expect(audit.text.contains("org.policy_updated") && audit.text.contains("console"))
            // A refusal is a readable message on the page, not a 500.
            let bad = try await browser.post(
                "/console/policy", [("csrf", csrf), ("defaultDays", "-3"), ("defaultScopes", "api:read")])
            #expect(bad.location == "/console/policy")
            #expect(try await browser.get("/console/policy").text.contains("Default lifetime must be a number of days"))
        }
    }

    @Test func membersWithoutAdminRightsSeeTheirPagesOnly() async throws {
        try await TestApp.run { app, client in
            try await app.addMember("dave")
            let token = try #require(
                try await client.call(
                    .post, "/api-tokens/dave", token: app.root.token.plaintext, json: #"{"name": "dave"}"#
                ).string("token"))
            let browser = CookieBrowser(client)
            try await browser.signIn(token)
            let mine = try await browser.get("/console/my-token")
            #expect(mine.status == .ok && !mine.text.contains(#"href="/console/members""#))
            let members = try await browser.get("/console/members")
            #expect(members.status == .forbidden && members.text.contains("Only organization admins"))
            // An organization token cannot sign in to the console.
            let org = try #require(
                try await client.call(
                    .post, "/api-tokens/svc", token: app.root.token.plaintext,
                    json: #"{"name": "svc", "isSystemToken": true}"#
                ).string("token"))
            let refused = try await CookieBrowser(client).signIn(org)
            #expect(refused.status == .unauthorized && refused.text.contains("Organization tokens belong to services"))
            let wrong = try await CookieBrowser(client).signIn("tsp_nope")
            #expect(wrong.status == .unauthorized && wrong.text.contains("That token does not work"))
        }
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
    var failureValue: Failure? { if case .failure(let failure) = self { failure } else { nil } }
}
