import TesseraCore

/// A SCIM refusal (RFC 7644 §3.12): the HTTP status and, where the RFC names one, a `scimType`.
/// SCIM clients parse this shape, never problem+json: the SCIM routes answer only with it.
public struct SCIMError: Error, Sendable, Equatable {
    public var status: Int
    public var scimType: String?
    public var detail: String

    public init(status: Int, scimType: String? = nil, detail: String) {
        self.status = status
        self.scimType = scimType
        self.detail = detail
    }

    public static func invalidFilter(_ detail: String) -> SCIMError {
        SCIMError(status: 400, scimType: "invalidFilter", detail: detail)
    }

    public static func invalidValue(_ detail: String) -> SCIMError {
        SCIMError(status: 400, scimType: "invalidValue", detail: detail)
    }

    public static func invalidSyntax(_ detail: String) -> SCIMError {
        SCIMError(status: 400, scimType: "invalidSyntax", detail: detail)
    }

    public static func invalidPath(_ detail: String) -> SCIMError {
        SCIMError(status: 400, scimType: "invalidPath", detail: detail)
    }

    public static func noTarget(_ detail: String) -> SCIMError {
        SCIMError(status: 400, scimType: "noTarget", detail: detail)
    }

    public static func mutability(_ detail: String) -> SCIMError {
        SCIMError(status: 400, scimType: "mutability", detail: detail)
    }

    public static func uniqueness(_ detail: String) -> SCIMError {
        SCIMError(status: 409, scimType: "uniqueness", detail: detail)
    }

    public static func notFound(_ detail: String) -> SCIMError {
        SCIMError(status: 404, detail: detail)
    }

    /// A domain rule's refusal, in SCIM's words.
    public init(_ error: DomainError) {
        switch error {
        case .invalidField, .invalid: self = .invalidValue(error.message)
        case .notFound: self = .notFound(error.message)
        case .conflict: self = .uniqueness(error.message)
        case .forbidden, .notAnAdmin: self = SCIMError(status: 403, detail: error.message)
        }
    }

    /// The body: `status` is a string, as RFC 7644 §3.12 has it.
    public var body: JSONValue {
        var members: [String: JSONValue] = [
            "schemas": .array([.string("urn:ietf:params:scim:api:messages:2.0:Error")]),
            "status": .string(String(status)), "detail": .string(detail),
        ]
        if let scimType { members["scimType"] = .string(scimType) }
        return .object(members)
    }
}
