import Crypto
import Foundation

/// Standard Webhooks signing (https://www.standardwebhooks.com): the secret is `whsec_` + base64
/// of the key; a delivery carries `webhook-id`, `webhook-timestamp` (epoch seconds) and
/// `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, so receivers can check it
/// with the existing verifier libraries.
public struct WebhookSecret: Sendable, CustomStringConvertible {
    public static let prefix = "whsec_"
    /// The `whsec_…` string: shown once to the admin, kept to sign with.
    public let encoded: String
    let key: SymmetricKey

    /// A new secret of 32 random bytes.
    public static func generate() -> WebhookSecret {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        return try! WebhookSecret(parsing: prefix + bytes.base64EncodedString())
    }

    /// An admin's own secret, or a stored one: `whsec_` + base64 of 24 to 64 bytes.
    public init(parsing encoded: String) throws(WebhookSecretError) {
        guard encoded.hasPrefix(Self.prefix),
            let key = Data(base64Encoded: String(encoded.dropFirst(Self.prefix.count))),
            (24...64).contains(key.count)
        else { throw WebhookSecretError() }
        self.encoded = encoded
        self.key = SymmetricKey(data: key)
    }

    /// The `webhook-signature` value for one delivery.
    public func signature(id: String, timestamp: Int64, body: some DataProtocol) -> String {
        var hmac = HMAC<SHA256>(key: key)
        hmac.update(data: Data("\(id).\(timestamp).".utf8))
        hmac.update(data: body)
        return "v1," + Data(hmac.finalize()).base64EncodedString()
    }

    public var description: String { "whsec_…(redacted)" }
}

public struct WebhookSecretError: Error, CustomStringConvertible {
    public var description: String { "must be whsec_ followed by the base64 of 24 to 64 bytes" }
}
