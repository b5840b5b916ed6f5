import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import TesseraCore
import TesseraHTTP
import TesseraPostgres

/// The SCIM 2.0 service provider of each organization at `/scim/v2/{org}/` (RFC 7643/7644,
/// DESIGN §12). Authenticated like the API (the cache barrier included), by an organization
/// token of that org holding `scim:provision`; everything it answers, errors included, is
/// `application/scim+json` in SCIM's own shapes.
public struct SCIMSurface: Surface {
    public init() {}

    package func addRoutes(to router: Router<TesseraRequestContext>, parts: SurfaceParts) {
        let controller = SCIMController(provisioning: ProvisioningService(store: parts.store), store: parts.store)
        let group = parts.protect(router.group("scim/v2").add(middleware: SCIMErrorMiddleware()))
        controller.addRoutes(to: group)
    }
}

struct SCIMController {
    let provisioning: ProvisioningService
    let store: TesseraStore

    static let contentType = "application/scim+json"

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.get(":org/ServiceProviderConfig", use: serviceProviderConfig)
        group.get(":org/ResourceTypes", use: resourceTypes)
        group.get(":org/ResourceTypes/:id", use: resourceType)
        group.get(":org/Schemas", use: schemas)
        group.get(":org/Schemas/:id", use: schema)
        group.get(":org/Users", use: listUsers)
        group.post(":org/Users/.search", use: searchUsers)
        group.post(":org/Users", use: createUser)
        group.get(":org/Users/:id", use: getUser)
        group.put(":org/Users/:id", use: replaceUser)
        group.patch(":org/Users/:id", use: patchUser)
        group.delete(":org/Users/:id", use: deleteUser)
        group.get(":org/Groups", use: listGroups)
        group.post(":org/Groups/.search", use: searchGroups)
        group.post(":org/Groups", use: createGroup)
        group.get(":org/Groups/:id", use: getGroup)
        group.put(":org/Groups/:id", use: replaceGroup)
        group.patch(":org/Groups/:id", use: patchGroup)
        group.delete(":org/Groups/:id", use: deleteGroup)
        group.post(":org/.search") { _, _ -> Response in
            throw SCIMError(status: 501, detail: "Searching several resource types at once is not supported")
        }
        group.post(":org/Bulk") { _, _ -> Response in
            throw SCIMError(status: 501, detail: "Bulk operations are not supported")
        }
        // A known endpoint with another method: 405 and Allow (RFC 7644 §3.12, RFC 9110).
        let allowed: [(String, [HTTPRequest.Method])] = [
            (":org/ServiceProviderConfig", [.get]), (":org/ResourceTypes", [.get]), (":org/ResourceTypes/:id", [.get]),
            (":org/Schemas", [.get]), (":org/Schemas/:id", [.get]), (":org/Users", [.get, .post]),
            (":org/Users/:id", [.get, .put, .patch, .delete]), (":org/Groups", [.get, .post]),
            (":org/Groups/:id", [.get, .put, .patch, .delete]),
        ]
        for (path, methods) in allowed {
            for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete] where !methods.contains(method) {
                group.on(RouterPath(path), method: method) { request, _ -> Response in
                    throw SCIMError(
                        status: 405,
                        detail:
                            "\(request.method) is not allowed here; use \(methods.map(\.rawValue).joined(separator: ", "))"
                    )
                }
            }
        }
        // Anything else under an org's base: SCIM's 404, not problem+json.
        for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete] {
            group.on(":org/**", method: method) { request, _ -> Response in
                throw SCIMError.notFound("No such SCIM endpoint: \(request.method) \(request.uri.path)")
            }
        }
    }

    // MARK: - Discovery

    @Sendable func serviceProviderConfig(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let (_, base) = try await authorize(request, context)
        return try Self.respond(SCIMDiscovery.serviceProviderConfig(base: base))
    }

    @Sendable func resourceTypes(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let (_, base) = try await authorize(request, context)
        return try Self.respond(Self.list(SCIMDiscovery.resourceTypes(base: base), total: nil, startIndex: 1))
    }

    @Sendable func resourceType(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let (_, base) = try await authorize(request, context)
        let id = try context.parameters.require("id")
        guard let found = SCIMDiscovery.resourceTypes(base: base).first(where: { $0["id"]?.string == id }) else {
            throw SCIMError.notFound("No resource type \(id)")
        }
        return try Self.respond(found)
    }

    @Sendable func schemas(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let (_, base) = try await authorize(request, context)
        return try Self.respond(Self.list(SCIMDiscovery.schemas(base: base), total: nil, startIndex: 1))
    }

    @Sendable func schema(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let (_, base) = try await authorize(request, context)
        let id = try context.parameters.require("id")
        guard let found = SCIMDiscovery.schemas(base: base).first(where: { $0["id"]?.string == id }) else {
            throw SCIMError.notFound("No schema \(id)")
        }
        return try Self.respond(found)
    }

    // MARK: - Users

    @Sendable func listUsers(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let query = try ListQuery(request.uri.queryParameters, rawQuery: request.uri.query)
        let page = try await provisioning.users(
            scim, filter: query.filter, startIndex: query.startIndex, count: query.count)
        return try Self.respond(
            Self.list(page.resources.map(query.projection.apply), total: page.total, startIndex: page.startIndex))
    }

    @Sendable func searchUsers(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let query = try ListQuery(search: try await Self.body(request, context))
        let page = try await provisioning.users(
            scim, filter: query.filter, startIndex: query.startIndex, count: query.count)
        return try Self.respond(
            Self.list(page.resources.map(query.projection.apply), total: page.total, startIndex: page.startIndex))
    }

    @Sendable func createUser(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let created = try await provisioning.createUser(scim, resource: try await Self.body(request, context))
        return try Self.respond(created, status: .created)
    }

    @Sendable func getUser(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let query = try ListQuery(request.uri.queryParameters, rawQuery: request.uri.query)
        let user = try await provisioning.user(scim, id: try context.parameters.require("id"))
        return try Self.respond(query.projection.apply(user))
    }

    @Sendable func replaceUser(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let user = try await provisioning.replaceUser(
            scim, id: try context.parameters.require("id"), resource: try await Self.body(request, context),
            ifMatch: request.headers[.ifMatch])
        return try Self.respond(user)
    }

    @Sendable func patchUser(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let user = try await provisioning.patchUser(
            scim, id: try context.parameters.require("id"), patch: try SCIMPatch(try await Self.body(request, context)),
            ifMatch: request.headers[.ifMatch])
        return try Self.respond(user)
    }

    @Sendable func deleteUser(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        try await provisioning.deleteUser(scim, id: try context.parameters.require("id"))
        return Response(status: .noContent)
    }

    // MARK: - Groups

    @Sendable func listGroups(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let query = try ListQuery(request.uri.queryParameters, rawQuery: request.uri.query)
        let page = try await provisioning.groups(
            scim, filter: query.filter, startIndex: query.startIndex, count: query.count,
            withMembers: query.projection.includes("members"))
        return try Self.respond(
            Self.list(page.resources.map(query.projection.apply), total: page.total, startIndex: page.startIndex))
    }

    @Sendable func searchGroups(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let query = try ListQuery(search: try await Self.body(request, context))
        let page = try await provisioning.groups(
            scim, filter: query.filter, startIndex: query.startIndex, count: query.count,
            withMembers: query.projection.includes("members"))
        return try Self.respond(
            Self.list(page.resources.map(query.projection.apply), total: page.total, startIndex: page.startIndex))
    }

    @Sendable func createGroup(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let created = try await provisioning.createGroup(scim, resource: try await Self.body(request, context))
        return try Self.respond(created, status: .created)
    }

    @Sendable func getGroup(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let query = try ListQuery(request.uri.queryParameters, rawQuery: request.uri.query)
        let group = try await provisioning.group(scim, id: try context.parameters.require("id"))
        return try Self.respond(query.projection.apply(group))
    }

    @Sendable func replaceGroup(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let group = try await provisioning.replaceGroup(
            scim, id: try context.parameters.require("id"), resource: try await Self.body(request, context),
            ifMatch: request.headers[.ifMatch])
        return try Self.respond(group)
    }

    @Sendable func patchGroup(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        let group = try await provisioning.patchGroup(
            scim, id: try context.parameters.require("id"), patch: try SCIMPatch(try await Self.body(request, context)),
            ifMatch: request.headers[.ifMatch])
        return try Self.respond(group)
    }

    @Sendable func deleteGroup(_ request: Request, context: TesseraRequestContext) async throws -> Response {
        let scim = try await provisioningRequest(request, context)
        try await provisioning.deleteGroup(scim, id: try context.parameters.require("id"))
        return Response(status: .noContent)
    }
}
