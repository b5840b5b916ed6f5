import Foundation
import Testing

@testable import TesseraIdentity

/// Filters as IdPs send them (RFC 7644 §3.4.2.2), parsed and applied without a database.
@Suite struct SCIMFilterTests {
    let user: JSONValue = .object([
        "id": .string("2819c223-7f76-453a-919d-413861904646"), "userName": .string("bjensen@example.com"),
        "externalId": .string("00u1abc"), "active": .bool(true),
        "name": .object(["givenName": .string("Barbara"), "familyName": .string("Jensen")]),
        "emails": .array([
            .object(["value": .string("bjensen@example.com"), "type": .string("work"), "primary": .bool(true)]),
            .object(["value": .string("babs@jensen.org"), "type": .string("home")]),
        ]),
    ])

    @Test(arguments: [
        ("userName eq \"bjensen@example.com\"", true),
        ("USERNAME eq \"BJENSEN@example.com\"", true),  // names and userName compare case-insensitively
        ("externalId eq \"00U1ABC\"", false),  // externalId is case-exact
        ("externalId eq \"00u1abc\" and active eq true", true),
        ("userName eq \"x\" or name.givenName sw \"Bar\"", true),
        ("not (name.familyName co \"ens\")", false),
        ("emails[type eq \"work\" and value co \"@example.com\"]", true),
        ("emails[type eq \"other\"]", false),
        ("emails co \"jensen.org\"", true),  // a complex multi-valued attribute compares its `value`
        ("title pr", false),
        ("name.givenName pr", true),
        ("urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"bjensen@example.com\"", true),
        ("active eq \"True\"", true),  // Entra's string booleans
    ])
    func matches(_ text: String, _ expected: Bool) throws {
        #expect(try SCIMFilter(parsing: text).matches(user) == expected, "\(text)")
    }

    @Test(arguments: [
        "userName eq", "userName eq bjensen", "userName zz \"x\"", "(userName eq \"x\"", "emails[type eq \"work\"",
        "eq \"x\"", "userName eq \"unterminated", "and", "",
    ])
    func malformedFiltersAreInvalidFilter(_ text: String) {
        #expect(throws: SCIMError.self) { try SCIMFilter(parsing: text.isEmpty ? " " : text) }
        do {
            _ = try SCIMFilter(parsing: text.isEmpty ? " " : text)
        } catch {
            #expect(error.scimType == "invalidFilter")
        }
    }

    @Test func theStoreNarrowsByTopLevelEqualities() throws {
        let filter = try SCIMFilter(parsing: "userName eq \"a\" and externalId eq \"b\"")
        #expect(filter.equality(on: "username") == "a")
        #expect(filter.equality(on: "externalId") == "b")
        #expect(try SCIMFilter(parsing: "userName eq \"a\" or externalId eq \"b\"").equality(on: "userName") == nil)
    }
}

/// PATCH bodies in the shapes Okta and Entra ID document, applied to a resource's JSON.
@Suite struct SCIMPatchTests {
    let user: JSONValue = .object([
        "userName": .string("alice"), "active": .bool(true),
        "name": .object(["givenName": .string("Alice")]),
        "emails": .array([.object(["value": .string("a@example.com"), "type": .string("work")])]),
    ])

    func patch(_ json: String) throws -> SCIMPatch {
        try SCIMPatch(try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)))
    }

    @Test func oktaDeactivatesWithAPathlessReplace() throws {
        let body = try patch(
            #"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#
        )
        #expect(try body.apply(to: user, readOnly: ["id"])["active"] == .bool(false))
    }

    @Test func entraSendsCapitalisedOpsAndStringBooleans() throws {
        let body = try patch(
            #"{"Operations":[{"op":"Replace","path":"active","value":"False"},{"op":"Add","path":"name.familyName","value":"Smith"},{"op":"Replace","path":"emails[type eq \"work\"].value","value":"alice@new.example"}]}"#
        )
        let patched = try body.apply(to: user, readOnly: ["id"])
        #expect(patched["active"]?.bool == false)
        #expect(patched["name"]?["familyName"] == .string("Smith"))
        #expect(patched["name"]?["givenName"] == .string("Alice"))
        #expect(patched["emails"]?.array?.first?["value"] == .string("alice@new.example"))
    }

    @Test func aFilteredPathWithoutAMatchMakesTheElement() throws {
        let body = try patch(
            #"{"Operations":[{"op":"replace","path":"emails[type eq \"home\"].value","value":"a@home.example"}]}"#)
        let emails = try body.apply(to: user, readOnly: [])["emails"]?.array ?? []
        #expect(emails.count == 2)
        #expect(emails.last?["type"] == .string("home"))
    }

    @Test func groupMembersAreAddedAndRemovedByValue() throws {
        let group: JSONValue = .object([
            "displayName": .string("devs"), "members": .array([.object(["value": .string("u1")])]),
        ])
        let add = try patch(#"{"Operations":[{"op":"add","path":"members","value":[{"value":"u2"},{"value":"u1"}]}]}"#)
        let added = try add.apply(to: group, readOnly: ["id"])
        #expect(added["members"]?.array?.compactMap { $0["value"]?.string } == ["u1", "u2"])
        let remove = try patch(#"{"Operations":[{"op":"remove","path":"members[value eq \"u1\"]"}]}"#)
        #expect(
            try remove.apply(to: added, readOnly: [])["members"]?.array?.compactMap { $0["value"]?.string } == ["u2"])
        let entraRemove = try patch(#"{"Operations":[{"op":"Remove","path":"members","value":[{"value":"u2"}]}]}"#)
        #expect(
            try entraRemove.apply(to: added, readOnly: [])["members"]?.array?.compactMap { $0["value"]?.string } == [
                "u1"
            ])
    }

    @Test func readOnlyAttributesAndMalformedBodiesAreRefused() throws {
        #expect(throws: SCIMError.self) {
            try patch(#"{"Operations":[{"op":"replace","path":"groups","value":[]}]}"#).apply(
                to: user, readOnly: ["groups"])
        }
        #expect(throws: SCIMError.self) { try patch(#"{"Operations":[]}"#) }
        #expect(throws: SCIMError.self) { try patch(#"{"Operations":[{"op":"move","path":"x"}]}"#) }
        #expect(throws: SCIMError.self) { try patch(#"{"Operations":[{"op":"remove"}]}"#) }
        #expect(throws: SCIMError.self) {
            try patch(#"{"Operations":[{"op":"replace","path":"emails[type eq ","value":"x"}]}"#).apply(
                to: user, readOnly: [])
        }
    }
}
