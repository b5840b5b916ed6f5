import Foundation

/// What a token may reach at a gateway (DESIGN §14; Keystone's application-credential access
/// rules): an HTTP method (or `*`), a path pattern whose `*` segment matches one segment and `**`
/// any number (none included), and optionally an exact host. A token with rules verifies only
/// for a request one of them matches; like scopes, rules never change.
public struct AccessRule: Sendable, Hashable {
    public let method: String
    public let path: String
    public let host: String?
    let segments: [Segment]

    enum Segment: Sendable, Hashable {
        case literal(String)
        case one
        case any
    }

    public static let maxRules = 100
    public static let maxPathLength = 512
    static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]

    /// Checks and normalises a rule: the method upper-cased, the path as ``RequestPath`` normalises
    /// a request's (so `/a//b/` and `/a/b` are one rule), the host lower-cased.
    public init(method: String, path: String, host: String? = nil) throws(DomainError) {
        let method = method.uppercased()
        guard Self.methods.contains(method) else {
            throw .invalidField(
                "accessRules", "method \(method.prefix(16)) is not GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or *")
        }
        guard path.hasPrefix("/"), path.count <= Self.maxPathLength, !path.contains("?"), !path.contains("#") else {
            throw .invalidField(
                "accessRules", "path must start with / and be at most \(Self.maxPathLength) characters, without ? or #")
        }
        guard let normalised = RequestPath(path) else {
            throw .invalidField(
                "accessRules", "path \(path.prefix(64)) has a malformed escape, an encoded slash or a dot segment")
        }
        var segments: [Segment] = []
        for segment in normalised.segments {
            switch segment {
            case "*": segments.append(.one)
            case "**": segments.append(.any)
            default:
                guard !segment.contains("*") else {
                    throw .invalidField("accessRules", "a * stands for a whole segment (* or **), not part of one")
                }
                segments.append(.literal(segment))
            }
        }
        if let host {
            let lower = host.lowercased()
            guard (1...255).contains(lower.count),
                lower.unicodeScalars.allSatisfy({
                    $0.isASCII && ($0.properties.isAlphabetic || "0123456789.-:[]".unicodeScalars.contains($0))
                })
            else { throw .invalidField("accessRules", "host \(host.prefix(64)) is not a host name") }
            self.host = lower
        } else {
            self.host = nil
        }
        self.method = method
        self.path = "/" + normalised.segments.joined(separator: "/")
        self.segments = segments
    }

    /// The rule as stored and shown: `METHOD path`, with ` host` when it names one.
    public var text: String { host.map { "\(method) \(path) \($0)" } ?? "\(method) \(path)" }

    /// Reads ``text`` back (the database's form); nil when it is not a rule.
    public init?(text: String) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard (2...3).contains(parts.count),
            let rule = try? AccessRule(method: parts[0], path: parts[1], host: parts.count == 3 ? parts[2] : nil)
        else { return nil }
        self = rule
    }

    /// Whether the (normalised) request matches: the method exactly (methods are case-sensitive,
    /// RFC 9110: `get` is not `GET`; `*` any; HEAD is allowed by a GET rule), the host when the
    /// rule names one, and the path.
    public func matches(method requestMethod: String, path request: RequestPath, host requestHost: String?) -> Bool {
        if method != "*" && method != requestMethod && !(method == "GET" && requestMethod == "HEAD") { return false }
        if let host {
            guard let requestHost, requestHost.lowercased() == host else { return false }
        }
        return Self.match(segments[...], request.segments[...])
    }

    static func match(_ pattern: ArraySlice<Segment>, _ path: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        switch first {
        case .any:
            let rest = pattern.dropFirst()
            if rest.isEmpty { return true }
            var tail = path
            while true {
                if match(rest, tail) { return true }
                guard !tail.isEmpty else { return false }
                tail = tail.dropFirst()
            }
        case .one:
            guard !path.isEmpty else { return false }
            return match(pattern.dropFirst(), path.dropFirst())
        case .literal(let literal):
            guard path.first == literal else { return false }
            return match(pattern.dropFirst(), path.dropFirst())
        }
    }
}

/// A request path as the rules see it (RFC 3986 §6.2.2): the query and fragment dropped,
/// percent-escapes decoded, empty segments (`//`) and `.` dropped, `..` taking away the segment
/// before it (never above the root). Refused (nil) when the path could mean something else to
/// the service behind the gateway: a malformed escape, an encoded `/` or `\`, a backslash, a
/// control character, or more than 8 KiB or 256 segments.
public struct RequestPath: Sendable, Equatable {
    public let segments: [String]

    public static let maxLength = 8192
    public static let maxSegments = 256

    public init?(_ uri: Substring) {
        var raw = uri
        if let cut = raw.firstIndex(where: { $0 == "?" || $0 == "#" }) { raw = raw[..<cut] }
        guard raw.utf8.count <= Self.maxLength, raw.first == "/" else { return nil }
        var segments: [String] = []
        for part in raw.split(separator: "/", omittingEmptySubsequences: true) {
            // The common segment (no escape, printable ASCII) costs one scan and one copy.
            var escaped = false
            var ascii = true
            for byte in part.utf8 {
                if byte == UInt8(ascii: "%") { escaped = true }
                if byte >= 0x80 { ascii = false }
                if byte == UInt8(ascii: "\\") || byte < 0x20 || byte == 0x7f { return nil }
            }
            let decoded: String
            if escaped || !ascii {
                let lower = part.lowercased()
                guard !lower.contains("%2f"), !lower.contains("%5c"), !lower.contains("%00"),
                    let text = escaped ? String(part).removingPercentEncoding : String(part),
                    !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
                else { return nil }
                decoded = text
            } else {
                decoded = String(part)
            }
            switch decoded {
            case "", ".": continue
            case "..": if !segments.isEmpty { segments.removeLast() }
            default: segments.append(decoded)
            }
            guard segments.count <= Self.maxSegments else { return nil }
        }
        self.segments = segments
    }

    public init?(_ uri: String) { self.init(uri[...]) }

    public var text: String { "/" + segments.joined(separator: "/") }
}

extension Array where Element == AccessRule {
    /// Whether a token with these rules may make this request (no rules: anything).
    public func allow(method: String, path: RequestPath?, host: String?) -> Bool {
        guard !isEmpty else { return true }
        guard let path else { return false }
        return contains { $0.matches(method: method, path: path, host: host) }
    }

    /// A create body's rules, checked: at most 100, no duplicates kept.
    public static func checked(_ rules: [(method: String, path: String, host: String?)]) throws(DomainError)
        -> [AccessRule]
    {
        guard rules.count <= AccessRule.maxRules else {
            throw .invalidField("accessRules", "must hold at most \(AccessRule.maxRules) rules")
        }
        var seen = Set<AccessRule>()
        var checked: [AccessRule] = []
        for rule in rules {
            let made = try AccessRule(method: rule.method, path: rule.path, host: rule.host)
            if seen.insert(made).inserted { checked.append(made) }
        }
        return checked
    }
}
