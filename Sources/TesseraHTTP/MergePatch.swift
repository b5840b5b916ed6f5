import Foundation
import Hummingbird

/// Decodes an object keeping the difference between an absent key and `null` (RFC 7396).
struct MergePatch: Decodable {
    let container: KeyedDecodingContainer<AnyCodingKey>

    init(from decoder: any Decoder) throws {
        container = try decoder.container(keyedBy: AnyCodingKey.self)
    }

    /// Whether the body names `key` at all (whatever its value).
    func has(_ key: String) -> Bool { container.contains(AnyCodingKey(key)) }

    /// nil when absent; an explicit `null` for a field that cannot be null is a 422.
    func value<T: Decodable>(_ key: String, as type: T.Type = T.self) throws -> T? {
        let codingKey = AnyCodingKey(key)
        guard container.contains(codingKey) else { return nil }
        return try decode(T.self, codingKey)
    }

    /// nil: absent; `.some(nil)`: explicit null; `.some(value)`.
    func nullable<T: Decodable>(_ key: String, as type: T.Type = T.self) throws -> T?? {
        let codingKey = AnyCodingKey(key)
        guard container.contains(codingKey) else { return nil }
        if try container.decodeNil(forKey: codingKey) { return .some(nil) }
        return .some(try decode(T.self, codingKey))
    }

    /// Decoding happens here, after the body was read: Foundation's own errors (a number no
    /// Swift type holds) become the DecodingError a 422 is made of, never a 500.
    private func decode<T: Decodable>(_ type: T.Type, _ key: AnyCodingKey) throws -> T {
        do {
            return try container.decode(T.self, forKey: key)
        } catch let error as DecodingError {
            throw error
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [key], debugDescription: "not representable"))
        }
    }
}
