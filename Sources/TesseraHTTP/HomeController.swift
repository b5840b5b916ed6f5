import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import TesseraAPI

/// `GET /` and `GET /docs`: what someone who opens the server's address finds. A browser
/// (`Accept` naming `text/html`) gets a small page saying what this is, with links to the API
/// reference and the OpenAPI document; anything else (curl, API clients) gets a JSON index of the
/// same links. `/docs` is the API reference, rendered from the served OpenAPI document.
///
/// The pages carry no script, and their one stylesheet is allowed by its hash in the
/// Content-Security-Policy, so nothing else can run or load.
struct HomeController {
    /// Where browsers opening `/` go: the console's `/console/` when it is served (DESIGN §8).
    var redirect: String?
    struct Index: ResponseEncodable {
        let name: String
        let description: String
        let links: [String: String]
    }

    static let index = Index(
        name: "Tessera",
        description: "Organization API tokens: issue, verify, rotate, revoke.",
        links: [
            "docs": "/docs", "openapi": "/openapi.json", "tokens": "/api-tokens", "verify": "/auth/verify",
            "health": "/healthz", "readiness": "/readyz", "metrics": "/metrics",
        ])

    func addRoutes(to router: Router<TesseraRequestContext>) {
        router.get("/") { request, context in
            guard Self.acceptsHTML(request) else { return try Self.index.response(from: request, context: context) }
            guard let redirect else { return Self.page(Self.home) }
            return Response(status: .seeOther, headers: [.location: redirect, .vary: "Accept"])
        }
        router.get("docs") { _, _ in Self.page(Self.reference) }
    }

    /// True when the `Accept` header names an HTML type with a non-zero quality.
    static func acceptsHTML(_ request: Request) -> Bool {
        guard let accept = request.headers[.accept] else { return false }
        return accept.split(separator: ",").contains { range in
            let parts = range.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard parts.first == "text/html" || parts.first == "application/xhtml+xml" else { return false }
            let quality = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            return quality > 0
        }
    }

    // MARK: - Pages

    static let style = """
        body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1d2330}\
        h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2rem}code{background:#f1f3f6;padding:.1rem .3rem;border-radius:3px}\
        table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e6eb;vertical-align:top}\
        .m{font-weight:600;font-family:monospace;white-space:nowrap}.p{font-family:monospace}.s{color:#6a7282;font-size:.9rem}
        """

    /// `style-src 'sha256-…'`: the inline stylesheet above and nothing else.
    static let contentSecurityPolicy: String = {
        let hash = Data(SHA256.hash(data: Data(style.utf8))).base64EncodedString()
        return
            "default-src 'none'; style-src 'sha256-\(hash)'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    }()

    static func page(_ html: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8", .contentSecurityPolicy: contentSecurityPolicy,
                .xContentTypeOptions: "nosniff", HTTPField.Name("Referrer-Policy")!: "no-referrer", .vary: "Accept",
            ],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func layout(title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title))</title><style>\(style)</style></head>
        <body>
        \(body)
        </body></html>
        """
    }

    static let home = layout(
        title: "Tessera",
        body: """
            <h1>Tessera</h1>
            <p>This is a Tessera server: it issues organization and personal API tokens, and verifies them for
            gateways and CI. It speaks HTTP and JSON; its web console is turned off here.</p>
            <ul>
            <li><a href="/docs">API reference</a>: every route, who may call it, what it answers</li>
            <li><a href="/openapi.json">OpenAPI document</a> (<code>/openapi.json</code>), for clients and tools</li>
            <li><a href="/readyz">Readiness</a> and <a href="/metrics">metrics</a></li>
            </ul>
            <p>Try it with a token: <code>curl -H "Authorization: Bearer $TOKEN" &lt;this address&gt;/api-tokens</code>,
            or with the <code>tessera</code> command line client: <code>tessera login</code>.</p>
            """)

    /// The operations of the OpenAPI document, grouped by tag, as one HTML page.
    static let reference: String = {
        let document = OpenAPIDocument.object
        let paths = document["paths"] as? [String: [String: [String: Any]]] ?? [:]
        let methods = ["get", "post", "put", "patch", "delete"]
        var groups: [String: [String]] = [:]
        for path in paths.keys.sorted() {
            for method in methods {
                guard let operation = paths[path]?[method] else { continue }
                let tag = (operation["tags"] as? [String])?.first ?? "other"
                let statuses = (operation["responses"] as? [String: Any] ?? [:]).keys.sorted().joined(separator: " ")
                let open = (operation["security"] as? [Any])?.isEmpty ?? false
                groups[tag, default: []].append(
                    """
                    <tr><td class="m">\(method.uppercased())</td><td class="p">\(escape(path))</td>\
                    <td>\(escape(operation["summary"] as? String ?? ""))<div class="s">\(open ? "no credential" : "token or JWT") · \
                    answers \(escape(statuses))</div></td></tr>
                    """)
            }
        }
        let info = document["info"] as? [String: Any] ?? [:]
        let sections = groups.keys.sorted().map { tag in
            "<h2>\(escape(tag))</h2>\n<table>\n\(groups[tag, default: []].joined(separator: "\n"))\n</table>"
        }
        return layout(
            title: "Tessera API reference",
            body: """
                <h1>Tessera API reference</h1>
                <p>\(escape(info["description"] as? String ?? "")) Version \(escape(info["version"] as? String ?? "")).
                Schemas and every detail: the <a href="/openapi.json">OpenAPI document</a>. Errors are
                <code>application/problem+json</code> (RFC 9457). Send a token as <code>Authorization: Bearer …</code>.</p>
                \(sections.joined(separator: "\n"))
                """)
    }()

    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
