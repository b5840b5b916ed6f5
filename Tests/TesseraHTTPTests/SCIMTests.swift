import Foundation
import HTTPTypes
import HummingbirdTesting
import TesseraCore
import TesseraHTTP
import Testing

/// SCIM 2.0 provisioning (DESIGN §12) through the application against the real PostgreSQL:
/// the lifecycle an IdP drives, its effect on tokens, roles from groups, hostile input.
@Suite struct SCIMTests {
    /// An organization token of `acme` holding scim:provision, made by its admin.
    static func scimToken(_ app: TestApp, _ client: any TestClientProtocol, org: String = "acme") async throws -> String
    {
        let created = try await client.call(
            .post, "/orgs/\(org)/api-tokens/scim-okta", token: app.root.token.plaintext,
            json: #"{"name": "Okta provisioning", "isSystemToken": true, "scopes": ["scim:provision"]}"#)
        #expect(created.status == .created, "\(created.text)")
        return try #require(created.string("token"))
    }

    static func user(_ name: String, externalId: String? = nil, active: Bool = true) -> String {
        let external = externalId.map { #", "externalId": "\#($0)""# } ?? ""
        return """
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "\(name)"\(external),
             "name": {"givenName": "\(name.capitalized)", "familyName": "Tester"},
             "emails": [{"value": "\(name)@example.com", "type": "work", "primary": true}], "active": \(active)}
            """
    }

    @Test func discoveryDescribesUsersAndGroups() async throws {
        try await TestApp.run { app, client in
            let token = try await Self.scimToken(app, client)
            let config = try await client.call(.get, "/scim/v2/acme/ServiceProviderConfig", token: token)
            #expect(config.status == .ok)
            #expect(config.headers[.contentType] == "application/scim+json")
            #expect((config.json["patch"] as? [String: Any])?["supported"] as? Bool == true)
            let types = try await client.call(.get, "/scim/v2/acme/ResourceTypes", token: token)
            #expect(
                (types.json["Resources"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["User", "Group"])
            let schemas = try await client.call(.get, "/scim/v2/acme/Schemas", token: token)
            #expect(schemas.json["totalResults"] as? Int == 2)
            let missing = try await client.call(.get, "/scim/v2/acme/Nothing", token: token)
            #expect(missing.status == .notFound)
            #expect(missing.json["status"] as? String == "404")
        }
    }

    @Test func onlyThisOrgsProvisioningTokenGetsIn() async throws {
        try await TestApp.run { app, client in
            let token = try await Self.scimToken(app, client)
            // No credential, a person's token, a plain org token, another org's path.
            let anonymous = try await client.call(.get, "/scim/v2/acme/Users")
            #expect(anonymous.status == .unauthorized)
            #expect(anonymous.json["schemas"] as? [String] == ["urn:ietf:params:scim:api:messages:2.0:Error"])
            #expect(
                try await client.call(.get, "/scim/v2/acme/Users", token: app.root.token.plaintext).status == .forbidden
            )
            let plain = try await client.call(
                .post, "/api-tokens/ci", token: app.root.token.plaintext,
                json: #"{"name": "ci", "isSystemToken": true, "scopes": ["org:admin"]}"#)
            #expect(
                try await client.call(.get, "/scim/v2/acme/Users", token: plain.string("token")).status == .forbidden)
            #expect(try await client.call(.get, "/scim/v2/other/Users", token: token).status == .forbidden)
            // The SCIM token opens nothing else.
            #expect(try await client.call(.get, "/api-tokens", token: token).status == .forbidden)
            // And no personal token may carry the scope.
            let personal = try await client.call(
                .post, "/api-tokens", token: app.root.token.plaintext,
                json: #"{"name": "mine", "scopes": ["scim:provision"]}"#)
            #expect(personal.status == .badRequest)
        }
    }

    @Test func aUsersLifecycleDrivesTheMembershipAndItsTokens() async throws {
        try await TestApp.run { app, client in
            let token = try await Self.scimToken(app, client)
            let created = try await client.call(
                .post, "/scim/v2/acme/Users", token: token, json: Self.user("carol", externalId: "00u-carol"))
            #expect(created.status == .created, "\(created.text)")
            let id = try #require(created.string("id"))
            #expect(created.headers[.eTag] == "W/\"1\"" || created.headers[.eTag] != nil)
            #expect((created.json["meta"] as? [String: Any])?["resourceType"] as? String == "User")
            // Again: uniqueness.
            let again = try await client.call(.post, "/scim/v2/acme/Users", token: token, json: Self.user("carol"))
            #expect(again.status == .conflict)
            #expect(again.json["scimType"] as? String == "uniqueness")
            // Filters as Okta and Entra send them.
            let byName = try await client.call(
                .get, "/scim/v2/acme/Users?filter=userName%20eq%20%22CAROL%22", token: token)
            #expect(byName.json["totalResults"] as? Int == 1)
            let byExternal = try await client.call(
                .get, "/scim/v2/acme/Users?filter=externalId%20eq%20%2200u-carol%22&attributes=userName", token: token)
            let found = try #require((byExternal.json["Resources"] as? [[String: Any]])?.first)
            #expect(found["userName"] as? String == "carol" && found["emails"] == nil)
            let bad = try await client.call(.get, "/scim/v2/acme/Users?filter=userName%20eq", token: token)
            #expect(bad.status == .badRequest && bad.json["scimType"] as? String == "invalidFilter")

            // carol signs her own personal token (she is a member now).
            let carolJWT = try await TestApp.jwt("carol")
            let own = try await client.call(.post, "/api-tokens", token: carolJWT, json: #"{"name": "laptop"}"#)
            #expect(own.status == .created, "\(own.text)")
            let secret = try #require(own.string("token"))
            #expect(try await client.call(.get, "/auth/verify", token: secret).status == .ok)

            // Okta deactivates: her token dies in the same transaction, she cannot act in acme.
            let off = try await client.call(
                .patch, "/scim/v2/acme/Users/\(id)", token: token,
                json:
                    #"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#
            )
            #expect(off.status == .ok, "\(off.text)")
            #expect(off.json["active"] as? Bool == false)
            #expect(try await client.call(.get, "/auth/verify", token: secret).status == .unauthorized)
            let revoked = try await client.call(
                .get, "/api-tokens/\(own.string("tokenUUID")!)", token: app.root.token.plaintext)
            #expect(revoked.string("revokedReason") == "owner_deprovisioned")
            let blocked = try await client.call(.post, "/api-tokens", token: carolJWT, json: #"{"name": "again"}"#)
            #expect(blocked.status == .badRequest || blocked.status == .notFound || blocked.status == .forbidden)

            // Entra reactivates with a string boolean: no token comes back, a new one may be made.
            let on = try await client.call(
                .patch, "/scim/v2/acme/Users/\(id)", token: token,
                json:
                    #"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"True"}]}"#
            )
            #expect(on.json["active"] as? Bool == true, "\(on.text)")
            #expect(try await client.call(.get, "/auth/verify", token: secret).status == .unauthorized)
            #expect(
                try await client.call(.post, "/api-tokens", token: carolJWT, json: #"{"name": "new"}"#).status
                    == .created)

            // An ETag that is not current is refused; PUT replaces.
            let stale = try await client.call(
                .put, "/scim/v2/acme/Users/\(id)", token: token, json: Self.user("carol"),
                headers: [.ifMatch: "W/\"1\""])
            #expect(stale.status == .preconditionFailed)
            let put = try await client.call(.put, "/scim/v2/acme/Users/\(id)", token: token, json: Self.user("carol"))
            #expect(put.status == .ok && put.json["externalId"] == nil)

            // DELETE removes the membership (owner_left_org); the person stays for other orgs.
            #expect(try await client.call(.delete, "/scim/v2/acme/Users/\(id)", token: token).status == .noContent)
            #expect(try await client.call(.get, "/scim/v2/acme/Users/\(id)", token: token).status == .notFound)
            let audit = try await client.call(
                .get, "/orgs/acme/audit-events?actor=scim-okta", token: app.root.token.plaintext)
            let actions = (audit.json["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions.contains("member.suspended") && actions.contains("member.removed"))
            #expect((audit.json["events"] as? [[String: Any]])?.first?["actorKind"] as? String == "scim")
        }
    }

    @Test func groupsDecideRolesAndSuspensions() async throws {
        try await TestApp.run { app, client in
            let token = try await Self.scimToken(app, client)
            var ids: [String: String] = [:]
            for name in ["dana", "erin"] {
                let created = try await client.call(.post, "/scim/v2/acme/Users", token: token, json: Self.user(name))
                ids[name] = created.string("id")
            }
            let admins = try await client.call(
                .post, "/scim/v2/acme/Groups", token: token,
                json:
                    #"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"acme-admins","members":[{"value":"\#(ids["dana"]!)"}]}"#
            )
            #expect(admins.status == .created, "\(admins.text)")
            let groupID = try #require(admins.string("id"))
            let users = try await client.call(
                .post, "/scim/v2/acme/Groups", token: token,
                json: #"{"displayName":"acme-users","members":[{"value":"\#(ids["erin"]!)"}]}"#)
            #expect(users.status == .created)
            // Unknown members are refused whole.
            let unknown = try await client.call(
                .post, "/scim/v2/acme/Groups", token: token,
                json: #"{"displayName":"ghosts","members":[{"value":"\#(UUID().uuidString)"}]}"#)
            #expect(unknown.status == .badRequest && unknown.json["scimType"] as? String == "invalidValue")

            // The mapping: dana becomes admin, erin stays member, root (in neither group) is suspended.
            let policy = try await client.call(
                .patch, "/orgs/acme", token: app.root.token.plaintext,
                json: #"{"adminGroup": "acme-admins", "userGroup": "acme-users"}"#)
            #expect(policy.status == .ok, "\(policy.text)")
            let members = try await client.call(.get, "/orgs/acme/members", token: try await TestApp.jwt("dana"))
            let roles = Dictionary(
                uniqueKeysWithValues: (members.json["members"] as? [[String: Any]] ?? []).compactMap {
                    ($0["username"] as? String).map { ($0, $0) }
                })
            #expect(roles["dana"] != nil)
            let danaAdmin = try await client.call(
                .get, "/orgs/acme/audit-events", token: try await TestApp.jwt("dana"))
            #expect(danaAdmin.status == .ok)  // admins only
            #expect(
                try await client.call(.get, "/auth/verify", token: app.root.token.plaintext).status == .unauthorized)

            // Out of the admin group: demoted at once.
            let out = try await client.call(
                .patch, "/scim/v2/acme/Groups/\(groupID)", token: token,
                json: #"{"Operations":[{"op":"remove","path":"members[value eq \"\#(ids["dana"]!)\"]"}]}"#)
            #expect(out.status == .ok, "\(out.text)")
            #expect((out.json["members"] as? [Any])?.isEmpty == true)
            let notAdmin = try await client.call(.get, "/orgs/acme/audit-events", token: try await TestApp.jwt("dana"))
            #expect(notAdmin.status == .forbidden || notAdmin.status == .notFound)

            // Renaming the admin group keeps the mapping; deleting it empties it.
            let renamed = try await client.call(
                .patch, "/scim/v2/acme/Groups/\(groupID)", token: token,
                json: #"{"Operations":[{"op":"replace","path":"displayName","value":"acme-owners"}]}"#)
            #expect(renamed.json["displayName"] as? String == "acme-owners")
            let org = try await client.call(.get, "/orgs/acme", token: try await TestApp.jwt("erin"))
            #expect(org.string("adminGroup") == "acme-owners")
            #expect(
                try await client.call(.delete, "/scim/v2/acme/Groups/\(groupID)", token: token).status == .noContent)
            let list = try await client.call(
                .get, "/scim/v2/acme/Groups?filter=displayName%20eq%20%22acme-users%22", token: token)
            #expect(list.json["totalResults"] as? Int == 1)
        }
    }

    @Test func hostileBodiesGetSCIMErrorsAndChangeNothing() async throws {
        try await TestApp.run { app, client in
            let token = try await Self.scimToken(app, client)
            for body in [
                "not json", "[]", #"{"userName": ""}"#, #"{"userName": "../root"}"#,
                #"{"userName": "x", "active": "maybe"}"#,
                #"{"userName": "x", "emails": "nope"}"#, #"{"userName": "x\u0000y"}"#,
            ] {
                let reply = try await client.call(.post, "/scim/v2/acme/Users", token: token, json: body)
                #expect(reply.status == .badRequest, "\(body): \(reply.status) \(reply.text)")
                #expect(reply.headers[.contentType] == "application/scim+json")
                #expect(reply.json["status"] as? String == "400")
            }
            let id = UUID().uuidString
            #expect(try await client.call(.get, "/scim/v2/acme/Users/\(id)", token: token).status == .notFound)
            #expect(try await client.call(.get, "/scim/v2/acme/Users/not-a-uuid", token: token).status == .notFound)
            let badPatch = try await client.call(
                .patch, "/scim/v2/acme/Users/\(id)", token: token, json: #"{"Operations":[{"op":"jump"}]}"#)
            #expect(badPatch.status == .badRequest)
            let huge = try await client.call(
                .post, "/scim/v2/acme/Users", token: token,
                json: #"{"userName": "big", "displayName": ""# + String(repeating: "x", count: 2 << 20) + #""}"#)
            #expect(
                huge.status == .contentTooLarge && huge.json["status"] as? String == "413",
                "\(huge.status) \(huge.text)")
            let users = try await client.call(.get, "/scim/v2/acme/Users", token: token)
            #expect(users.json["totalResults"] as? Int == 1)  // root only
        }
    }

    /// A JWT's groups claim drives the memberships of orgs with a mapping, as an SSO sign-in's
    /// does: role on every request, just-in-time membership when on (DESIGN §12).
    @Test func jwtGroupsDriveTheMembership() async throws {
        var jwt = JWTSettings(secret: TestApp.jwtSecret)
        jwt.justInTime = true
        try await TestApp.run(jwt: jwt) { app, client in
            try await app.addMember("hank")
            let mapped = try await client.call(
                .patch, "/orgs/acme", token: app.root.token.plaintext, json: #"{"adminGroup": "acme-admins"}"#)
            #expect(mapped.status == .ok, "\(mapped.text)")
            let asAdmin = try await TestApp.jwt("hank", groups: ["acme-admins", "unrelated"])
            #expect(try await client.call(.get, "/orgs/acme/audit-events", token: asAdmin).status == .ok)
            let members = try await client.call(.get, "/orgs/acme/members", token: asAdmin)
            let hank = (members.json["members"] as? [[String: Any]] ?? []).first { $0["username"] as? String == "hank" }
            #expect(hank?["role"] as? String == "admin" && hank?["groups"] as? [String] == ["acme-admins"])
            // Out of the group at the IdP: the next request is a member's.
            let asMember = try await TestApp.jwt("hank", groups: [])
            #expect(try await client.call(.get, "/orgs/acme/audit-events", token: asMember).status == .forbidden)
            // Just in time: ivy, new to Tessera, arrives in the admin group.
            let ivy = try await TestApp.jwt("ivy", groups: ["acme-admins"])
            #expect(try await client.call(.get, "/orgs/acme/audit-events", token: ivy).status == .ok)
            // No groups claim at all changes nothing.
            let silent = try await TestApp.jwt("ivy")
            #expect(try await client.call(.get, "/orgs/acme/audit-events", token: silent).status == .ok)
        }
    }

    /// The console shows who the IdP manages and who it suspended; a suspended member's console
    /// session in the org ends (DESIGN §12).
    @Test func theConsoleBadgesProvisionedAndSuspendedMembers() async throws {
        try await TestApp.run { app, client in
            let token = try await Self.scimToken(app, client)
            let created = try await client.call(.post, "/scim/v2/acme/Users", token: token, json: Self.user("kim"))
            let id = try #require(created.string("id"))
            let kim = try #require(
                try await client.call(
                    .post, "/api-tokens/kim", token: app.root.token.plaintext, json: #"{"name": "kim laptop"}"#
                ).string("token"))
            let kimBrowser = CookieBrowser(client)
            try await kimBrowser.signIn(kim)
            #expect(try await kimBrowser.get("/console/my-token").status == .ok)
            _ = try await client.call(
                .patch, "/scim/v2/acme/Users/\(id)", token: token,
                json: #"{"Operations":[{"op":"replace","path":"active","value":false}]}"#)
            // Her session is gone (and her token, which it was signed in with, too).
            let after = try await kimBrowser.get("/console/my-token")
            #expect(after.status == .seeOther || after.text.contains("Sign in"), "\(after.status)")
            let browser = CookieBrowser(client)
            try await browser.signIn(app.root.token.plaintext)
            let page = try await browser.get("/console/members").text
            #expect(page.contains(">SCIM</span>") && page.contains(">suspended</span>"))
        }
    }
}
