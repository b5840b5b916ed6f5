/// A refusal by a domain rule, whichever face (API, console, CLI) asked. Each surface maps it
/// once: the API to problem+json with the status below, the console to a message on the page.
public enum DomainError: Error, Sendable, Equatable {
    /// A field breaks its shape or limit (422, the field named).
    case invalidField(_ field: String, _ reason: String)
    /// A rule or the org's policy refused the request (400, LISA's validation class).
    case invalid(String)
    /// Not allowed to do this (403).
    case forbidden(String)
    /// LISA answers 401 when a non-admin does an admin's thing.
    case notAnAdmin(String)
    /// Does not exist, or the caller may not see it (404).
    case notFound(String)
    /// Conflicts with the current state (409).
    case conflict(String)

    /// The refusal in words (a field's reason prefixed with its name).
    public var message: String {
        switch self {
        case .invalidField(let field, let reason): "\(field) \(reason)"
        case .invalid(let text), .forbidden(let text), .notAnAdmin(let text), .notFound(let text),
            .conflict(let text):
            text
        }
    }
}

/// The limits of free-text fields (DESIGN §2), checked in one place for every face.
public enum Limits {
    /// Token, organization and webhook names and labels: 1 to 200 characters.
    public static let nameLength = 1...200
    /// Descriptions: at most 1000 characters (line breaks allowed).
    public static let descriptionLength = 1000
    /// Groups on a membership or a token: at most 100, each a name.
    public static let groups = 100
    /// A list's `search` text.
    public static let searchLength = 200

    /// A one-line name of 1 to 200 characters without control characters.
    public static func checkName(_ name: String, field: String = "name") throws(DomainError) {
        guard nameLength.contains(name.count), Validation.isPlainText(name) else {
            throw .invalidField(field, "must be 1 to 200 characters, without control characters")
        }
    }

    /// At most 1000 characters without control characters (line breaks and tabs allowed).
    public static func checkDescription(_ description: String, field: String = "description") throws(DomainError) {
        guard description.count <= descriptionLength, Validation.isPlainText(description, multiline: true) else {
            throw .invalidField(field, "must be at most 1000 characters, without control characters")
        }
    }

    /// At most 100 group names of 1 to 200 characters each.
    public static func checkGroups(_ groups: [String], field: String = "groups") throws(DomainError) {
        guard groups.count <= Self.groups,
            groups.allSatisfy({ nameLength.contains($0.count) && Validation.isPlainText($0) })
        else {
            throw .invalidField(field, "must be at most 100 names of 1 to 200 characters")
        }
    }
}
