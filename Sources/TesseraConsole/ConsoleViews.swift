import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore
import TesseraPostgres
import TesseraVerification

/// Settings of the web console (DESIGN §8).
public struct ConsoleSettings: Sendable {
    /// A session unused this long ends (`TESSERA_CONSOLE_IDLE_MINUTES`, default 120).
    public var idleTimeout: Duration = .seconds(2 * 3600)
    /// A session ends this long after sign-in whatever happens (`TESSERA_CONSOLE_ABSOLUTE_HOURS`, default 12).
    public var absoluteTimeout: Duration = .seconds(12 * 3600)
    /// `Secure` cookies; nil: on unless the server listens on loopback only.
    public var secureCookies: Bool?
    /// The folder holding `templates/` and `static/` (`TESSERA_WEB_DIR`, else found like `sql/`).
    public var directory: String?
    /// "Sign in with SSO", when configured.
    public var oidc: OIDCSettings?

    public init() {}
}

/// The console's templates (swift-mustache, HTML-escaping by default) and static files, read
/// once at start-up from the `web/` folder: `TESSERA_WEB_DIR`, `./web`,
/// `<binary>/../share/tessera/web`, or the checkout the binary was built from (as `sql/`).
struct ConsoleViews: Sendable {
    let library: MustacheLibrary
    /// `static/<name>` → (content type, bytes).
    let files: [String: (type: String, body: ByteBuffer)]

    static func load(directory: String?) async throws -> ConsoleViews {
        let root =
            try directory
            ?? ResourceFolder.locate("web", marker: "templates/layout.mustache", environment: "TESSERA_WEB_DIR")
        let library = try await MustacheLibrary(directory: root + "/templates")
        guard library.getTemplate(named: "layout") != nil else {
            throw ResourceFolderError.notFound("web/templates", [root + "/templates"])
        }
        var files: [String: (type: String, body: ByteBuffer)] = [:]
        let types = [
            "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8", "svg": "image/svg+xml",
            "png": "image/png",
        ]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/static")) ?? [] {
            guard let data = FileManager.default.contents(atPath: root + "/static/" + name),
                let type = types[URL(fileURLWithPath: name).pathExtension]
            else { continue }
            files[name] = (type, ByteBuffer(bytes: data))
        }
        return ConsoleViews(library: library, files: files)
    }

    /// Renders `template` with `data` (plus the layout's values for `user`) as a 200 page.
    func page(_ template: String, _ data: [String: Any], user: ConsoleUser?, status: HTTPResponse.Status = .ok)
        -> Response
    {
        var values = data
        if let back = data["back"] as? String {
            values["backEncoded"] = back.addingPercentEncoding(
                withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~/")))
        }
        if let user {
            values["signedIn"] = true
            values["me"] = user.caller.username
            values["csrf"] = user.session.csrf
            values["orgSlug"] = user.org.slug
            values["orgName"] = user.org.displayName
            values["isAdmin"] = user.isAdmin
            values["isPlatformAdmin"] = user.isPlatformAdmin
            values["role"] = user.caller.role?.rawValue ?? (user.isPlatformAdmin ? "platform admin" : "")
            values["switchOrgs"] = user.organizations.count > 1 || user.isPlatformAdmin
            values["orgs"] = user.organizations.map {
                ["slug": $0.slug, "name": $0.displayName, "current": $0.id == user.org.id]
            }
            if let flash = user.session.flash { values["flash"] = ["text": flash.text, "error": flash.isError] }
            values["nav_" + template.replacingOccurrences(of: "-", with: "_")] = true
        }
        let html =
            library.render(values, withTemplate: template) ?? "<!doctype html><title>Tessera</title><p>Page not found."
        return Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    func errorPage(status: HTTPResponse.Status, message: String) -> Response {
        page(
            "error", ["title": status.reasonPhrase, "status": status.code, "message": message], user: nil,
            status: status)
    }
}
