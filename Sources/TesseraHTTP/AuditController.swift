import Foundation
import Hummingbird
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraVerification

/// `GET /orgs/{org}/audit-events` (admins): newest first, keyset-paginated, filtered by `actor`,
/// `action`, `token`, `since`/`until` (epoch seconds). Events never hold a secret.
package struct AuditController {
    let store: TesseraStore
    let organizations: OrganizationController

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.get(":org/audit-events", use: list)
    }

    @Sendable func list(_ request: Request, context: TesseraRequestContext) async throws -> AuditPage {
        let (caller, _) = try await organizations.resolve(request, context, scope: "org:read", admin: true)
        let query = try Self.query(request.uri.queryParameters)
        let (events, more) = try await store.withConnection {
            try await AuditRepository($0, logger: context.logger).events(orgID: caller.orgID, query: query)
        }
        return AuditPage(
            events: events.map { record in
                AuditEventInfo(
                    id: String(record.id), occurredDate: epoch(record.occurredAt),
                    actor: record.actorUsername, actorKind: record.actorKind,
                    actorTokenUUID: record.actorTokenID?.uuidString.lowercased(), action: record.action,
                    tokenUUID: record.targetTokenID?.uuidString.lowercased(), username: record.targetUsername,
                    sourceIP: record.sourceIP,
                    details: (try? JSONDecoder().decode([String: String].self, from: Data(record.details.utf8))) ?? [:])
            },
            nextCursor: more ? events.last.map { String($0.id) } : nil)
    }

    package static func query(_ parameters: Parameters) throws -> AuditQuery {
        try parameters.requireSingle("limit", "cursor", "actor", "action", "token", "since", "until")
        var query = AuditQuery()
        if let raw = parameters.get("limit") {
            guard let limit = Int(raw), (1...1000).contains(limit) else {
                throw Problem(.badRequest, "limit must be an integer from 1 to 1000")
            }
            query.limit = limit
        }
        if let raw = parameters.nonEmpty("cursor") {
            guard let id = Int64(raw), id > 0 else {
                throw Problem(.badRequest, "cursor is not one this server issued")
            }
            query.beforeID = id
        }
        query.actor = parameters.nonEmpty("actor")
        query.action = parameters.nonEmpty("action")
        if let raw = parameters.get("token") {
            guard let id = UUID(uuidString: raw) else { throw Problem(.badRequest, "token must be a token UUID") }
            query.tokenID = id
        }
        for (name, keyPath) in [("since", \AuditQuery.since), ("until", \AuditQuery.until)] {
            if let raw = parameters.get(name) {
                guard let seconds = Int64(raw), seconds >= 0 else {
                    throw Problem(.badRequest, "\(name) must be epoch seconds")
                }
                query[keyPath: keyPath] = Date(timeIntervalSince1970: TimeInterval(seconds))
            }
        }
        return query
    }
}
