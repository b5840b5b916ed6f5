import Foundation
import Hummingbird
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices

/// `/users` (platform admins): create, get, disable, delete (``UserService``).
struct UserController {
    let users: UserService
    let resolver: CallerResolver

    func addRoutes(to group: RouterGroup<TesseraRequestContext>) {
        group.post(use: create)
        group.get(":username", use: get)
        group.patch(":username", use: update)
        group.delete(":username", use: delete)
    }

    struct CreateRequest: Decodable {
        var username: String
        var platformAdmin: Bool?
    }

    @Sendable func create(_ request: Request, context: TesseraRequestContext) async throws -> EditedResponse<UserInfo> {
        let actor = try await resolver.platformAdmin(request, context: context)
        let body = try await request.decodeJSON(CreateRequest.self, context: context)
        let user = try await users.create(
            username: body.username, platformAdmin: body.platformAdmin ?? false, by: actor.auditActor(context))
        return EditedResponse(status: .created, response: UserInfo(user))
    }

    @Sendable func get(_ request: Request, context: TesseraRequestContext) async throws -> UserInfo {
        _ = try await resolver.platformAdmin(request, context: context)
        return UserInfo(try await users.existing(try context.parameters.require("username")))
    }

    @Sendable func update(_ request: Request, context: TesseraRequestContext) async throws -> UserInfo {
        let actor = try await resolver.platformAdmin(request, context: context)
        let body = try await request.decodeJSON(MergePatch.self, context: context)
        let statusText: String?
        let platformAdmin: Bool?
        do {
            statusText = try body.value("status")
            platformAdmin = try body.value("platformAdmin")
        } catch let error as DecodingError {
            throw Problem.unprocessable(error)
        }
        let status = statusText.flatMap(UserStatus.init(rawValue:))
        if statusText != nil && status == nil {
            throw Problem.invalidField("status", "must be active or disabled")
        }
        let username = try context.parameters.require("username")
        let target = try await users.existing(username)
        try await users.update(target, status: status, platformAdmin: platformAdmin, by: actor.auditActor(context))
        return UserInfo(try await users.existing(username))
    }

    @Sendable func delete(_ request: Request, context: TesseraRequestContext) async throws -> Message {
        let actor = try await resolver.platformAdmin(request, context: context)
        let target = try await users.existing(try context.parameters.require("username"))
        try await users.delete(target, by: actor.auditActor(context))
        return Message(message: "User deleted successfully")
    }
}

/// A caller allowed on the platform routes.
struct PlatformActor: Sendable {
    let username: String
    let kind: AuditActorKind

    func auditActor(_ context: TesseraRequestContext) -> AuditActor {
        AuditActor(username: username, kind: kind, sourceIP: context.remoteAddress)
    }
}

extension CallerResolver {
    /// Platform routes: a platform admin's personal token holding `platform:admin`, or a JWT of
    /// an active platform admin. Anyone else gets 403.
    func platformAdmin(_ request: Request, context: TesseraRequestContext) async throws -> PlatformActor {
        switch context.identity {
        case .token(let token):
            guard token.kind == .personal, token.platformAdmin,
                ScopeCatalog.builtIn.expand(token.scopes).contains("platform:admin")
            else { throw Problem(.forbidden, "Only platform admins can do this") }
            return PlatformActor(username: token.username, kind: .token)
        case .jwt(let username):
            let user = try await store.withConnection {
                try await UserRepository($0, logger: context.logger).find(username: username)
            }
            guard let user, user.status == .active, user.platformAdmin else {
                throw Problem(.forbidden, "Only platform admins can do this")
            }
            return PlatformActor(username: username, kind: .jwt)
        case nil:
            throw Problem.unauthenticated("Missing credential")
        }
    }
}
