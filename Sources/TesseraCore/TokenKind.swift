/// The two kinds of token of DESIGN §2.
///
/// - `personal`: owned by a member; dies with the membership or the user.
/// - `organization`: LISA's "system token"; owned by the org, managed by admins, used by CI.
public enum TokenKind: String, Sendable, Hashable, CaseIterable, Codable {
    case personal
    case organization

    /// The prefix of the secret (`tsp` or `tso`), visible in logs of secret scanners.
    public var secretPrefix: String {
        switch self {
        case .personal: "tsp"
        case .organization: "tso"
        }
    }

    public init?(secretPrefix: some StringProtocol) {
        switch secretPrefix {
        case "tsp": self = .personal
        case "tso": self = .organization
        default: return nil
        }
    }
}
