import Hummingbird
import TesseraHTTP
import TesseraServices

/// BentoCloud's API-token surface under `/api/v1` (DESIGN §9), authenticated as the REST API is,
/// and the browser login of command-line clients (`/api/v1/auth/code`, `/api/v1/auth/token`,
/// `/api_tokens`), which `bentoml cloud login` and `tessera login --web` use.
public struct BentoCloudSurface: Surface {
    public init() {}

    package func addRoutes(to router: Router<TesseraRequestContext>, parts: SurfaceParts) {
        BentoCloudController(store: parts.store, resolver: parts.resolver).addRoutes(to: parts.api("api/v1"))
        CLILoginController(logins: CLILoginService(store: parts.store)).addRoutes(to: router)
    }
}
