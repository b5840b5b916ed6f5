import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import Logging
import NIOCore
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraServices
import TesseraVerification
import TesseraWebhooks

/// The token pages: My token, Organization tokens, and each token's actions.
extension ConsoleController {
    // MARK: - Tokens

    @Sendable func myToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let page = try await store.withConnection { connection in
            try await TokenRepository(connection, logger: context.logger).list(
                orgID: user.org.id, visibleTo: user.caller.userID, all: false,
                query: TokenQuery(limit: 100, kind: .personal))
        }
        // Revoked tokens (deleted, rotated away, cascaded) are history: the audit log keeps them.
        let live = page.records.filter { $0.status != .revoked }
        let mayCreate = user.caller.role != nil && (user.isAdmin || user.org.userTokensEnabled)
        var data: [String: Any] = [
            "title": "My token", "tokens": live.map { row($0, user) }, "empty": live.isEmpty,
            "mayCreate": mayCreate, "back": "/console/my-token",
        ]
        if user.caller.role == nil {
            data["notMember"] = true
        } else if !mayCreate {
            data["disabled"] = true
        }
        data.merge(try await createForm(user, context: context)) { _, new in new }
        return views.page("my-token", data, user: user)
    }

    @Sendable func createMyToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let issued = try await flashing(context, back: "/console/my-token") {
            let body = try await createRequest(context.form, user: user, context: context)
            return try await operations.createOwn(
                body, caller: user.caller, org: user.org, actor: context.actor, logger: context.logger)
        }
        return secretPage(issued, user: user, heading: "Token created", back: "/console/my-token", request: request)
    }

    @Sendable func orgTokens(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        try ConsoleAdminPages.dropEmptyParameters(request)
        let parameters = request.uri.queryParameters
        var query = try TokenController.listQuery(parameters)
        if parameters.get("limit") == nil { query.limit = 25 }
        let kind = parameters.get("kind")
        if kind == nil { query.kind = .organization }
        if kind == "all" { query.kind = nil }
        if query.kind == .personal && !user.isAdmin { query.kind = .organization }
        let page = try await operations.list(caller: user.caller, query: query, logger: context.logger)
        func link(cursor: String?) -> String {
            var items: [(String, String)] = []
            if let search = query.search { items.append(("search", search)) }
            if let raw = parameters.get("kind") { items.append(("kind", raw)) }
            if let status = query.status { items.append(("status", status.rawValue)) }
            if let source = parameters.get("source") { items.append(("source", source)) }
            if query.ascending { items.append(("sort", "createdDate")) }
            if parameters.get("limit") != nil { items.append(("limit", String(query.limit))) }
            if let cursor { items.append(("cursor", cursor)) }
            var components = URLComponents()
            components.path = "/console/org-tokens"
            components.queryItems = items.isEmpty ? nil : items.map { URLQueryItem(name: $0.0, value: $0.1) }
            return components.string ?? "/console/org-tokens"
        }
        let back = link(cursor: parameters.get("cursor"))
        var data: [String: Any] = [
            "title": "Organization tokens", "tokens": page.records.map { row($0, user) }, "empty": page.records.isEmpty,
            "search": query.search ?? "", "back": back,
            "filtered": query.search != nil || query.status != nil || query.source != .direct,
            "sourceOptions": [("direct", "Directly"), ("federation", "Exchanged by CI"), ("all", "Either way")]
                .map { ["value": $0.0, "label": $0.1, "selected": (parameters.get("source") ?? "direct") == $0.0] },
            "kindOptions": [
                ("organization", "Organization tokens"), ("personal", "Personal tokens"), ("all", "All tokens"),
            ]
            .filter { user.isAdmin || $0.0 == "organization" }
            .map { ["value": $0.0, "label": $0.1, "selected": (kind ?? "organization") == $0.0] },
            "statusOptions": [
                ("", "Any status"), ("active", "Active"), ("inactive", "Inactive"), ("revoked", "Revoked"),
            ]
            .map { ["value": $0.0, "label": $0.1, "selected": (query.status?.rawValue ?? "") == $0.0] },
            "sortOptions": [("-createdDate", "Newest first"), ("createdDate", "Oldest first")]
                .map {
                    [
                        "value": $0.0, "label": $0.1,
                        "selected": (query.ascending ? "createdDate" : "-createdDate") == $0.0,
                    ]
                },
        ]
        if let next = page.next { data["nextPage"] = link(cursor: TokenController.cursor(next)) }
        if parameters.get("cursor") != nil { data["firstPage"] = link(cursor: nil) }
        if user.isAdmin { data.merge(try await createForm(user, context: context)) { _, new in new } }
        return views.page("org-tokens", data, user: user)
    }

    @Sendable func createOrgToken(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = "/console/org-tokens"
        let issued = try await flashing(context, back: back) {
            guard let label = context.form.text("label") else {
                throw Problem.invalidField(
                    "label", "is required: the service or pipeline that will use the token, e.g. ci-deploy")
            }
            var body = try await createRequest(context.form, user: user, context: context)
            body.isSystemToken = true
            return try await operations.createFor(
                label, body, caller: user.caller, org: user.org, actor: context.actor, logger: context.logger)
        }
        return secretPage(issued, user: user, heading: "Organization token created", back: back, request: request)
    }

    @Sendable func setStatus(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = backPath(context)
        try await flashing(context, back: back) {
            let record = try await token(context, user)
            let status: TokenStatus = context.form["status"] == "active" ? .active : .inactive
            _ = try await operations.update(
                record, name: nil, description: nil, status: status, caller: user.caller, actor: context.actor,
                logger: context.logger)
            flash(context, "Token “\(record.name)” is now \(status == .active ? "active" : "inactive").")
        }
        throw ConsoleRedirect(location: back)
    }

    @Sendable func rotate(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = backPath(context)
        let issued = try await flashing(context, back: back) {
            let record = try await token(context, user)
            let overlap = Int(context.form["overlap"] ?? "0") ?? -1
            return try await operations.rotate(
                record, overlapSeconds: overlap, caller: user.caller, actor: context.actor, logger: context.logger)
        }
        return secretPage(issued, user: user, heading: "Token rotated", back: back, request: request)
    }

    @Sendable func confirmDelete(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back =
            request.uri.queryParameters.get("back").flatMap { isSameOriginPath($0) ? $0 : nil } ?? "/console/my-token"
        let record = try await token(context, user)
        guard operations.mayManage(record, caller: user.caller) else { throw TokenService.tokenNotFound }
        return views.page(
            "confirm-delete",
            [
                "title": "Delete token", "token": row(record, user), "back": back,
                "consequence": record.kind == .organization
                    ? "Everything that uses it (CI pipelines, services labelled \(record.username)) will be refused at once."
                    : "Anything that uses it will be refused at once. You can create a new token afterwards.",
            ],
            user: user)
    }

    @Sendable func delete(_ request: Request, context: ConsoleContext) async throws -> Response {
        let user = try context.signedIn()
        let back = backPath(context)
        try await flashing(context, back: back) {
            let record = try await token(context, user)
            try await operations.delete(record, caller: user.caller, actor: context.actor, logger: context.logger)
            flash(context, "Token “\(record.name)” was deleted; it no longer works.")
        }
        throw ConsoleRedirect(location: back)
    }
}
