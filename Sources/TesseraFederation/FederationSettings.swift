import Foundation

/// How the exchange trusts issuers and how long it keeps what it issued (DESIGN §13).
public struct FederationSettings: Sendable {
    /// `TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS`: http issuers, and issuers on loopback or private
    /// addresses, for tests and closed networks. Off: https on public addresses only.
    public var allowHTTPIssuers = false
    /// `TESSERA_FEDERATION_RETENTION_DAYS`: expired exchanged tokens are deleted this long after
    /// they expire (default 7).
    public var retentionDays = 7
    /// How often this replica purges expired exchanged tokens and used JWT ids.
    public var purgeInterval: Duration = .seconds(300)
    /// `TESSERA_FEDERATION_KEY_REFETCH_SECONDS`: the least time between two fetches of an
    /// issuer's keys caused by an unknown `kid` (default 30).
    public var unknownKeyRefetchInterval: TimeInterval = 30
    /// Timeout of one discovery or JWKS fetch.
    public var fetchTimeout: TimeInterval = 5

    public init() {}

    /// From the environment; a malformed value is an error that names the variable.
    public static func fromEnvironment(_ environment: [String: String]) throws(SettingsError) -> FederationSettings {
        var settings = FederationSettings()
        if let raw = environment["TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS"], !raw.isEmpty {
            guard let allow = Bool(raw) else {
                throw SettingsError("TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS=\(raw) is not true or false")
            }
            settings.allowHTTPIssuers = allow
        }
        if let raw = environment["TESSERA_FEDERATION_RETENTION_DAYS"], !raw.isEmpty {
            guard let days = Int(raw), (0...3650).contains(days) else {
                throw SettingsError("TESSERA_FEDERATION_RETENTION_DAYS=\(raw) is not a number of days from 0 to 3650")
            }
            settings.retentionDays = days
        }
        if let raw = environment["TESSERA_FEDERATION_KEY_REFETCH_SECONDS"], !raw.isEmpty {
            guard let seconds = Int(raw), (1...3600).contains(seconds) else {
                throw SettingsError(
                    "TESSERA_FEDERATION_KEY_REFETCH_SECONDS=\(raw) is not a number of seconds from 1 to 3600")
            }
            settings.unknownKeyRefetchInterval = TimeInterval(seconds)
        }
        return settings
    }

    public struct SettingsError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}
