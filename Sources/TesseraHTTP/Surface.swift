import HTTPTypes
import Hummingbird
import ServiceLifecycle
import TesseraPostgres

/// A face of Tessera that the application serves beside the REST API: the web console
/// (`TesseraConsole`) and the BentoCloud routes with CLI login (`TesseraBentoCloud`). They live in
/// their own modules, above this one; `tessera serve` and the tests hand them to
/// ``buildApplication(configuration:client:migrator:logger:jwt:clock:notifications:lookups:standby:surfaces:)``.
package protocol Surface: Sendable {
    /// Adds the surface's routes, after the REST API's.
    func addRoutes(to router: Router<TesseraRequestContext>, parts: SurfaceParts)
    /// Background services the surface needs, run and shut down with the application's.
    var services: [any Service] { get }
    /// Where a browser opening `/` is sent (the console), if anywhere.
    var home: String? { get }
}

extension Surface {
    package var services: [any Service] { [] }
    package var home: String? { nil }
}

/// What a surface builds its routes from: the application's store and the REST API's
/// authentication, so a surface's writes and callers are those of the API.
package struct SurfaceParts {
    package let store: TesseraStore
    package let resolver: CallerResolver
    /// A group under `path` behind the cache barrier and the API's authentication (token or JWT).
    package let api: (RouterPath) -> RouterGroup<TesseraRequestContext>
    /// Puts the cache barrier and the API's authentication behind `group`'s own middleware (a
    /// surface that answers errors in its own format adds that first).
    package let protect: (RouterGroup<TesseraRequestContext>) -> RouterGroup<TesseraRequestContext>
}

extension Request {
    /// `scheme://host` as the client reached this server (`https` when a TLS-terminating proxy
    /// says so in `X-Forwarded-Proto`): the base of absolute URLs a surface hands out.
    package var origin: String {
        let scheme = headers[HTTPField.Name("X-Forwarded-Proto")!] == "https" ? "https" : "http"
        return "\(scheme)://\(head.authority ?? "127.0.0.1")"
    }
}
