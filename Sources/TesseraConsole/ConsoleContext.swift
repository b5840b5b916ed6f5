import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import NIOCore
import TesseraCore
import TesseraHTTP
import TesseraPostgres
import TesseraVerification

/// What a console session remembers (stored as JSON in `console_sessions`): who signed in and
/// how, the CSRF token, the org being looked at, and a one-shot message. Never a token secret:
/// a session signed in with a token keeps only that token's SHA-256, to check on every request
/// that it still verifies.
public struct ConsoleSession: Codable, Sendable {
    var username: String
    /// "token" or "oidc".
    var method: String
    /// Hex SHA-256 of the sign-in token (token sign-ins only).
    var tokenHash: String?
    var csrf: String
    var signedInAt: Date
    var org: String?
    var flash: Flash?
    /// When the idle expiry was last pushed forward (at most every five minutes: a page view
    /// does not write its session row).
    var renewedAt: Date?

    struct Flash: Codable, Sendable {
        var text: String
        var isError: Bool
    }

    static func newCSRFToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// The signed-in person, resolved for this request (after the session and, for token sign-ins,
/// the token were checked): who they are in the org they are looking at.
struct ConsoleUser: Sendable {
    var session: ConsoleSession
    var caller: Caller
    var org: OrganizationRecord
    /// Orgs the user belongs to (the org switcher).
    var organizations: [OrganizationRecord]
    var isAdmin: Bool { caller.isAdmin(catalog: .builtIn) }
    var isPlatformAdmin: Bool { caller.isPlatformAdmin(catalog: .builtIn) }
}

/// The request context of `/console/…`: a child of the API's context, with the session
/// (hummingbird-auth), the posted form, and the signed-in user once resolved.
public struct ConsoleContext: ChildRequestContext, SessionRequestContext {
    public typealias ParentContext = TesseraRequestContext
    public var coreContext: CoreRequestContextStorage
    public let sessions: SessionContext<ConsoleSession>
    public let remoteAddress: String?
    /// A posted `application/x-www-form-urlencoded` body, read once by the CSRF check.
    var form = Form()
    var user: ConsoleUser?

    public init(context: TesseraRequestContext) throws {
        self.coreContext = context.coreContext  // keeps the route parameters (a fresh storage would drop them)
        self.sessions = .init()
        self.remoteAddress = context.remoteAddress
    }

    /// Forms are small; a larger body is a 413.
    public var maxUploadSize: Int { 64 * 1024 }

    func signedIn() throws -> ConsoleUser {
        guard let user else { throw ConsoleRedirect.signIn }
        return user
    }

    /// How this person appears in the audit trail: kind `console`, their username, their address.
    var actor: AuditActor {
        AuditActor(username: user?.caller.username, kind: .console, sourceIP: remoteAddress)
    }
}

/// A posted form: every field's values in order (checkbox groups repeat a name).
struct Form: Sendable {
    private(set) var fields: [String: [String]] = [:]

    init() {}

    init(_ buffer: ByteBuffer) {
        let text = String(buffer: buffer)
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = Self.decode(parts[0])
            let value = parts.count > 1 ? Self.decode(parts[1]) : ""
            fields[name, default: []].append(value)
        }
    }

    private static func decode(_ text: Substring) -> String {
        String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
    }

    subscript(_ name: String) -> String? { fields[name]?.first }

    /// The field trimmed, nil when absent or blank.
    func text(_ name: String) -> String? {
        guard let value = self[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
            return nil
        }
        return value
    }

    func all(_ name: String) -> [String] { fields[name] ?? [] }
}

/// Thrown by console handlers to send the browser elsewhere (POST-redirect-GET, or to sign in).
struct ConsoleRedirect: Error {
    let location: String
    static let signIn = ConsoleRedirect(location: "/console/sign-in")
}

/// Only paths of this console, never a scheme or another host (`//evil.example`, `/\\evil`).
func isSameOriginPath(_ path: String) -> Bool {
    guard path.hasPrefix("/console/") || path == "/console" else { return false }
    return !path.contains("//") && !path.contains("\\") && !path.contains("\r") && !path.contains("\n")
}

func constantTimeEquals(_ left: String, _ right: String) -> Bool {
    let a = Array(left.utf8)
    let b = Array(right.utf8)
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in a.indices { difference |= a[index] ^ b[index] }
    return difference == 0
}
