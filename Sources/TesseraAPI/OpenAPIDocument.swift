import Foundation

/// The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`: the hand-kept contract.
///
/// It is `Resources/openapi.json`, compiled into the binary (SwiftPM `embedInCode`), so a deployed
/// `tessera` needs no file beside it. Edit the JSON file itself; `OpenAPIContractTests` holds the
/// router to it (every route documented, every documented operation routed, every answer's status
/// and required fields).
public enum OpenAPIDocument {
    /// The document as served, byte for byte.
    public static let bytes: [UInt8] = PackageResources.openapi_json

    /// The parsed document (for `/docs` and the tests).
    public static var object: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }
}
