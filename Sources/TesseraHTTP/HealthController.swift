import Hummingbird
import TesseraPostgres
import TesseraVerification

/// `GET /healthz` (the process answers) and `GET /readyz` (database reachable, no pending migration).
struct HealthController {
    let store: TesseraStore
    let migrator: Migrator

    struct Status: ResponseEncodable {
        let status: String
    }

    func addRoutes(to router: Router<TesseraRequestContext>) {
        router.get("healthz") { _, _ in Status(status: "ok") }
        router.get("readyz", use: ready)
    }

    @Sendable func ready(_ request: Request, context: TesseraRequestContext) async throws -> Status {
        let pending: [Migration]
        do {
            pending = try await withTimeout(.seconds(5)) {
                try await migrator.pending(on: store.client, logger: context.logger)
            }
        } catch {
            context.logger.warning("readiness check failed", metadata: ["error": "\(String(reflecting: error))"])
            throw Problem(.serviceUnavailable, "Database unreachable")
        }
        guard pending.isEmpty else {
            throw Problem(
                .serviceUnavailable, "Database has pending migrations: \(pending.map(\.name).joined(separator: ", "))")
        }
        return Status(status: "ready")
    }
}
