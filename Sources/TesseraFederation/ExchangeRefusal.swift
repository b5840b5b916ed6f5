import Foundation

/// Why `/oauth/token` refuses (RFC 6749 §5.2, RFC 8693 §2.2.2): always status 400 (no client
/// authentication is involved, so never 401), with a description that helps the CI author without
/// telling an attacker which condition of which policy failed.
public struct ExchangeRefusal: Error, Sendable, Equatable {
    public let error: String
    public let description: String
    /// 400, but for a method the endpoint does not take (405).
    public var status = 400

    public init(error: String, description: String, status: Int = 400) {
        self.error = error
        self.description = description
        self.status = status
    }

    public static func request(_ description: String) -> ExchangeRefusal {
        .init(error: "invalid_request", description: description)
    }
    public static func grant(_ description: String) -> ExchangeRefusal {
        .init(error: "invalid_grant", description: description)
    }
    public static func scope(_ description: String) -> ExchangeRefusal {
        .init(error: "invalid_scope", description: description)
    }
    public static func target(_ description: String) -> ExchangeRefusal {
        .init(error: "invalid_target", description: description)
    }
    public static func unsupportedGrantType(_ description: String) -> ExchangeRefusal {
        .init(error: "unsupported_grant_type", description: description)
    }
    /// The one answer about conditions, audiences and unknown orgs alike.
    public static let noPolicy = ExchangeRefusal.grant("no trust policy matched")
}
