import Foundation
import TesseraCore
import TesseraPostgres

/// How SCIM resources look on the wire, and what a request's resource must hold. A SCIM User
/// of an org is a membership of that org (DESIGN §12): `id` is the user's UUID.
enum SCIMResource {
    static let userSchema = "urn:ietf:params:scim:schemas:core:2.0:User"
    static let groupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"
    static let listSchema = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

    /// `W/"<version>"`, the ETag and `meta.version`.
    static func etag(_ version: Int64) -> String { "W/\"\(version)\"" }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    static func meta(_ type: String, created: Date, modified: Date, location: String, version: Int64) -> JSONValue {
        .object([
            "resourceType": .string(type), "created": .string(timestamp(created)),
            "lastModified": .string(timestamp(modified)), "location": .string(location),
            "version": .string(etag(version)),
        ])
    }

    // MARK: - Users

    static func user(_ member: MemberRecord, groups: [(id: UUID, displayName: String)], base: String) -> JSONValue {
        let id = member.userID.uuidString.lowercased()
        var object: [String: JSONValue] = [
            "schemas": .array([.string(userSchema)]), "id": .string(id), "userName": .string(member.username),
            "groups": .array(
                groups.map {
                    .object([
                        "value": .string($0.id.uuidString.lowercased()), "display": .string($0.displayName),
                        "$ref": .string("\(base)/Groups/\($0.id.uuidString.lowercased())"),
                    ])
                }),
            "meta": meta(
                "User", created: member.createdAt, modified: max(member.updatedAt, member.createdAt),
                location: "\(base)/Users/\(id)", version: member.version),
        ]
        if let external = member.externalID { object["externalId"] = .string(external) }
        if let profile = try? JSONDecoder().decode(JSONValue.self, from: Data(member.profile.utf8)),
            case .object(let kept) = profile
        {
            for (key, value) in kept { object[key] = value }
        }
        return .object(object)
    }

    /// What a POST or PUT (or a PATCH's result) asks a user to be.
    struct UserDraft: Equatable {
        var userName: String
        var scim: SCIMProfile
    }

    /// Reads and checks a user resource: `userName` required; `name`, `displayName`, `emails`
    /// kept for the IdP; `active` (Entra's "False" too). Unknown attributes are ignored.
    static func userDraft(_ resource: JSONValue) throws(SCIMError) -> UserDraft {
        guard case .object = resource else { throw SCIMError.invalidSyntax("a User is a JSON object") }
        guard let userName = resource["userName"]?.string, !userName.isEmpty else {
            throw SCIMError.invalidValue("userName is required")
        }
        guard Validation.isValidUsername(userName) else {
            throw SCIMError.invalidValue(
                "userName \(userName) is not a Tessera username: 1-255 of A-Z a-z 0-9 ._@+- starting with a letter or digit"
            )
        }
        // An absent `active` (never sent, or removed) reads as active and is not shown back.
        var active = true
        var profile: [String: JSONValue] = [:]
        if let value = resource["active"], !value.isNull {
            guard let flag = value.bool else { throw SCIMError.invalidValue("active is true or false") }
            active = flag
            profile["active"] = .bool(flag)
        }
        let externalID = try optionalText(resource["externalId"], "externalId", limit: 255)
        if let name = resource["name"], !name.isNull {
            guard case .object = name else { throw SCIMError.invalidValue("name is an object") }
            var kept: [String: JSONValue] = [:]
            for key in ["formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"] {
                if let text = try optionalText(name[key], "name.\(key)", limit: 200) { kept[key] = .string(text) }
            }
            if !kept.isEmpty { profile["name"] = .object(kept) }
        }
        if let text = try optionalText(resource["displayName"], "displayName", limit: 200) {
            profile["displayName"] = .string(text)
        }
        if let emails = resource["emails"], !emails.isNull {
            guard let items = emails.array, items.count <= 20 else {
                throw SCIMError.invalidValue("emails is a list of at most 20 addresses")
            }
            var kept: [JSONValue] = []
            for item in items {
                guard let value = try optionalText(item["value"], "emails.value", limit: 320) else { continue }
                var email: [String: JSONValue] = ["value": .string(value)]
                if let type = try optionalText(item["type"], "emails.type", limit: 64) { email["type"] = .string(type) }
                if let primary = item["primary"], !primary.isNull {
                    guard let flag = primary.bool else { throw SCIMError.invalidValue("emails.primary is a boolean") }
                    email["primary"] = .bool(flag)
                }
                kept.append(.object(email))
            }
            if !kept.isEmpty { profile["emails"] = .array(kept) }
        }
        let encoded = (try? JSONEncoder().encode(JSONValue.object(profile))).map { String(decoding: $0, as: UTF8.self) }
        return UserDraft(
            userName: userName, scim: SCIMProfile(active: active, externalID: externalID, profile: encoded ?? "{}"))
    }

    static func optionalText(_ value: JSONValue?, _ name: String, limit: Int) throws(SCIMError) -> String? {
        guard let value, !value.isNull else { return nil }
        guard let text = value.string else { throw SCIMError.invalidValue("\(name) is a string") }
        guard text.count <= limit, Validation.isPlainText(text) else {
            throw SCIMError.invalidValue("\(name) must be at most \(limit) characters, without control characters")
        }
        return text.isEmpty ? nil : text
    }

    // MARK: - Groups

    static func group(_ group: GroupRecord, members: [(id: UUID, username: String)], base: String) -> JSONValue {
        let id = group.id.uuidString.lowercased()
        var object: [String: JSONValue] = [
            "schemas": .array([.string(groupSchema)]), "id": .string(id), "displayName": .string(group.displayName),
            "members": .array(
                members.map {
                    .object([
                        "value": .string($0.id.uuidString.lowercased()),
                        "$ref": .string("\(base)/Users/\($0.id.uuidString.lowercased())"),
                    ])
                }),
            "meta": meta(
                "Group", created: group.createdAt, modified: group.updatedAt, location: "\(base)/Groups/\(id)",
                version: group.version),
        ]
        if let external = group.externalID { object["externalId"] = .string(external) }
        return .object(object)
    }

    /// What a POST or PUT (or a PATCH's result) asks a group to be.
    struct GroupDraft: Equatable {
        var displayName: String
        var externalID: String?
        var memberIDs: [UUID]
    }

    static func groupDraft(_ resource: JSONValue) throws(SCIMError) -> GroupDraft {
        guard case .object = resource else { throw SCIMError.invalidSyntax("a Group is a JSON object") }
        guard let displayName = resource["displayName"]?.string, !displayName.isEmpty else {
            throw SCIMError.invalidValue("displayName is required")
        }
        do { try Limits.checkName(displayName, field: "displayName") } catch { throw SCIMError(error) }
        let externalID = try optionalText(resource["externalId"], "externalId", limit: 255)
        var ids: [UUID] = []
        if let members = resource["members"], !members.isNull {
            guard let items = members.array else { throw SCIMError.invalidValue("members is a list") }
            guard items.count <= 100_000 else { throw SCIMError.invalidValue("at most 100000 members per request") }
            for item in items {
                guard
                    let value = item["value"]?.string
                        ?? item["$ref"]?.string?.split(separator: "/").last.map(String.init),
                    let id = UUID(uuidString: value)
                else { throw SCIMError.invalidValue("each member has the value of a User id") }
                ids.append(id)
            }
        }
        var seen = Set<UUID>()
        return GroupDraft(
            displayName: displayName, externalID: externalID, memberIDs: ids.filter { seen.insert($0).inserted })
    }
}
