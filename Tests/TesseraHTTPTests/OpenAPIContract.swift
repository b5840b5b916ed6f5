import Foundation
import TesseraAPI

/// Reads the OpenAPI document the way the contract tests need it: its operations, and whether a
/// JSON answer has what the documented schema requires.
enum OpenAPIContract {
    // Parsed once; never mutated.
    nonisolated(unsafe) static let document = OpenAPIDocument.object

    struct Operation {
        let path: String
        let method: String
        let statuses: Set<String>
        let secured: Bool
        let responses: [String: Any]
    }

    static var operations: [Operation] {
        let paths = document["paths"] as? [String: [String: [String: Any]]] ?? [:]
        return paths.flatMap { path, methods in
            methods.map { method, operation in
                let responses = operation["responses"] as? [String: Any] ?? [:]
                let secured = !((operation["security"] as? [Any])?.isEmpty ?? true)
                return Operation(
                    path: path, method: method, statuses: Set(responses.keys), secured: secured, responses: responses)
            }
        }.sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }

    /// `/orgs/{org}/members/{username}` → `/orgs/{}/members/{}`: parameter names differ between
    /// the router and the document (the LISA path reuses {tokenUUID} for a username).
    static func shape(_ path: String) -> String {
        path.replacingOccurrences(of: #"\{[^}]*\}"#, with: "{}", options: .regularExpression)
    }

    static func operation(_ method: String, _ path: String) -> Operation? {
        operations.first { $0.method == method.lowercased() && $0.path == path }
    }

    /// The JSON schema documented for `status` of `operation`, if its body is JSON.
    static func schema(of operation: Operation, status: Int) -> [String: Any]? {
        let response = operation.responses[String(status)] as? [String: Any]
        let content = response?["content"] as? [String: Any]
        return (content?["application/json"] as? [String: Any])?["schema"] as? [String: Any]
    }

    /// What `value` lacks or gets wrong against `schema` (required keys, types, nested objects
    /// and arrays), each as "at: what"; empty when it conforms.
    static func violations(_ value: Any, _ schema: [String: Any], at path: String = "$") -> [String] {
        if let reference = schema["$ref"] as? String {
            let name = String(reference.split(separator: "/").last ?? "")
            let schemas = (document["components"] as? [String: Any])?["schemas"] as? [String: Any]
            guard let target = schemas?[name] as? [String: Any] else { return ["\(path): unknown schema \(reference)"] }
            return violations(value, target, at: path)
        }
        if let options = schema["oneOf"] as? [[String: Any]] {
            let results = options.map { violations(value, $0, at: path) }
            return results.contains { $0.isEmpty } ? [] : results.min { $0.count < $1.count } ?? []
        }
        switch schema["type"] as? String {
        case "object":
            guard let object = value as? [String: Any] else { return ["\(path): not an object"] }
            var found: [String] = []
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                found.append("\(path).\(key): required, missing")
            }
            for (key, property) in schema["properties"] as? [String: [String: Any]] ?? [:] {
                if let nested = object[key] { found += violations(nested, property, at: "\(path).\(key)") }
            }
            return found
        case "array":
            guard let array = value as? [Any] else { return ["\(path): not an array"] }
            guard let items = schema["items"] as? [String: Any] else { return [] }
            return array.enumerated().flatMap { violations($1, items, at: "\(path)[\($0)]") }
        case "string": return value is String ? [] : ["\(path): not a string"]
        // JSONSerialization gives numbers and booleans alike as NSNumber.
        case "integer", "number", "boolean": return value is NSNumber ? [] : ["\(path): not a number or boolean"]
        case "null": return value is NSNull ? [] : ["\(path): not null"]
        default: return []
        }
    }
}
