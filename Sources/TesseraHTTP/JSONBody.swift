import Foundation
import Hummingbird

extension Request {
    /// Decodes a JSON body; shape errors become a 422 problem that names each offending field.
    /// Unknown fields are ignored. Bodies over 1 MiB get 413 (from the collect limit).
    /// `whenEmpty`: the value of an absent body, for routes whose body is optional.
    /// `nullable`: the top-level keys that may be `null`; an explicit `null` anywhere else is a
    /// 422 (a field that cannot be null is not silently treated as absent).
    package func decodeJSON<Value: Decodable>(
        _ type: Value.Type, context: TesseraRequestContext, whenEmpty: Value? = nil, nullable: Set<String> = []
    ) async throws -> Value {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: context.maxUploadSize)
        } catch {
            // the only way a well-behaved client gets here: a body over the limit
            throw Problem(.contentTooLarge, "Request body is larger than 1 MiB")
        }
        guard buffer.readableBytes > 0 else {
            if let whenEmpty { return whenEmpty }
            throw Problem(
                .unprocessableContent, "Request body is empty: a JSON object is expected",
                errors: [.init(field: "body", message: "is required")])
        }
        let data = Data(buffer.readableBytesView)
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            for (key, value) in object where value is NSNull && !nullable.contains(key) {
                throw Problem(
                    .unprocessableContent, "Invalid request body: \(key) must not be null",
                    errors: [.init(field: key, message: "must not be null")])
            }
        }
        do {
            return try JSONDecoder().decode(Value.self, from: data)
        } catch let error as DecodingError {
            throw Problem.unprocessable(error)
        } catch {
            // Foundation's own errors (a number no Swift type holds, ...): still the client's body.
            throw Problem(
                .unprocessableContent, "Invalid request body: body is not valid JSON",
                errors: [.init(field: "body", message: "is not valid JSON")])
        }
    }
}

extension Problem {
    package static func unprocessable(_ error: DecodingError) -> Problem {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            let keys = codingPath + (last.map { [$0] } ?? [])
            let joined = keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return joined.isEmpty ? "body" : joined.replacingOccurrences(of: ".[", with: "[")
        }
        let field: FieldError
        switch error {
        case .keyNotFound(let key, let context):
            field = .init(field: path(context.codingPath, key), message: "is required")
        case .typeMismatch(let type, let context):
            field = .init(field: path(context.codingPath), message: "must be \(Self.describe(type))")
        case .valueNotFound(let type, let context):
            field = .init(field: path(context.codingPath), message: "must be \(Self.describe(type)), not null")
        case .dataCorrupted(let context):
            field =
                context.codingPath.isEmpty
                ? .init(field: "body", message: "is not valid JSON")
                : .init(field: path(context.codingPath), message: "is invalid")
        @unknown default:
            field = .init(field: "body", message: "is invalid")
        }
        return Problem(.unprocessableContent, "Invalid request body: \(field.field) \(field.message)", errors: [field])
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Bool.Type: "a boolean"
        case is [String].Type, is [Any].Type: "an array"
        default:
            "\(type)".contains("Array")
                ? "an array" : "\(type)".contains("Dictionary") ? "an object" : "a value of the right type"
        }
    }

    /// 422 for a field constraint the decoder cannot express (length, pattern).
    package static func invalidField(_ field: String, _ message: String) -> Problem {
        Problem(
            .unprocessableContent, "Invalid request body: \(field) \(message)",
            errors: [.init(field: field, message: message)])
    }
}

/// A coding key for objects whose keys are data (JWT claims, merge-patch bodies).
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { self.stringValue = string }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Parameters {
    /// An optional query parameter: absent and empty (`?cursor=`) mean the same.
    func nonEmpty(_ name: String) -> String? {
        guard let value = get(name), !value.isEmpty else { return nil }
        return value
    }

    /// A single-valued query parameter given twice is ambiguous: 400 rather than a silent pick.
    func requireSingle(_ names: String...) throws {
        for name in names where getAll(name).count > 1 {
            throw Problem(.badRequest, "Query parameter \(name) is given more than once")
        }
    }
}
