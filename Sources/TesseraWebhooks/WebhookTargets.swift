import Foundation
import TesseraCore

#if canImport(Glibc)
    import Glibc
#endif

/// Where webhooks may point (DESIGN §11): `http(s)` URLs whose host resolves only to public
/// addresses. Loopback, link-local (cloud metadata lives there), private, shared (CGNAT),
/// multicast and unspecified addresses are refused, so a webhook cannot be used to reach the
/// inside of the network Tessera runs in (SSRF), unless `allowPrivate`
/// (`TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true`, for tests and closed networks). Checked when a
/// webhook is saved and again before every delivery (DNS may change in between).
public struct WebhookTargetPolicy: Sendable {
    public var allowPrivate: Bool

    public init(allowPrivate: Bool) { self.allowPrivate = allowPrivate }

    public enum Refusal: Error, CustomStringConvertible {
        case notHTTP, noHost, unresolvable(String), privateAddress(String)
        public var description: String {
            switch self {
            case .notHTTP: "must be an http:// or https:// URL"
            case .noHost: "must name a host"
            case .unresolvable(let host): "host \(host) does not resolve"
            case .privateAddress(let address):
                "resolves to \(address), a loopback, link-local or private address (set TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true to allow)"
            }
        }
    }

    /// A checked target: its URL, and the address that was checked when the host is a name.
    public struct Target: Sendable {
        public var url: URL
        /// The host's address as checked (text), to connect to that one and no other: resolving
        /// the name again could give another answer (DNS rebinding). Nil for an IP literal, and
        /// when private targets are allowed.
        public var address: String?
    }

    /// Parses and checks `string`; the resolved addresses must all be public.
    public func check(_ string: String) throws(Refusal) -> URL {
        try target(string).url
    }

    /// Parses and checks `string` as ``check(_:)`` does, and keeps the checked address.
    public func target(_ string: String) throws(Refusal) -> Target {
        guard string.count <= 2048, let url = URL(string: string), let scheme = url.scheme?.lowercased(),
            ["http", "https"].contains(scheme), url.user == nil, url.password == nil
        else { throw .notHTTP }
        guard let host = url.host, !host.isEmpty else { throw .noHost }
        if allowPrivate { return Target(url: url, address: nil) }
        let name = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let addresses = Self.resolve(name)
        guard let first = addresses.first else { throw .unresolvable(host) }
        if let bad = addresses.first(where: { !Self.isPublic($0) }) {
            throw .privateAddress(Self.text(bad))
        }
        return Target(url: url, address: Self.parse(name) == nil ? Self.text(first) : nil)
    }

    /// An address as text (dotted IPv4, compressed IPv6): Core's, as address limits write it.
    static func text(_ address: [UInt8]) -> String { AddressRange.text(address) }

    /// `text` as an IPv4 or IPv6 literal, or nil when it is a name.
    static func parse(_ text: String) -> [UInt8]? { AddressRange.parse(text) }

    /// The addresses `host` resolves to, as 4 or 16 bytes.
    static func resolve(_ host: String) -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [[UInt8]] = []
        for entry in sequence(first: first, next: { $0.pointee.ai_next }) {
            guard let address = entry.pointee.ai_addr else { continue }
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    addresses.append(withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) })
                }
            case AF_INET6:
                address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    addresses.append(withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) })
                }
            default: continue
            }
        }
        return addresses
    }

    static func isPublic(_ address: [UInt8]) -> Bool {
        if address.count == 16 {
            // IPv4-mapped (::ffff:a.b.c.d) is judged as the IPv4 address.
            if address[0..<10].allSatisfy({ $0 == 0 }) && address[10] == 0xff && address[11] == 0xff {
                return isPublic(Array(address[12...]))
            }
            if address.allSatisfy({ $0 == 0 }) { return false }  // ::
            if address[0..<15].allSatisfy({ $0 == 0 }) && address[15] == 1 { return false }  // ::1
            if address[0] & 0xfe == 0xfc { return false }  // fc00::/7 unique local
            if address[0] == 0xfe && address[1] & 0xc0 == 0x80 { return false }  // fe80::/10 link-local
            if address[0] == 0xff { return false }  // multicast
            return true
        }
        guard address.count == 4 else { return false }
        let (a, b) = (address[0], address[1])
        switch a {
        case 0, 10, 127: return false  // "this network", private, loopback
        case 100 where b & 0xc0 == 64: return false  // 100.64/10 shared (CGNAT)
        case 169 where b == 254: return false  // link-local, cloud metadata
        case 172 where b & 0xf0 == 16: return false  // 172.16/12
        case 192 where b == 168: return false  // 192.168/16
        case 224...255: return false  // multicast, reserved, broadcast
        default: return true
        }
    }
}
