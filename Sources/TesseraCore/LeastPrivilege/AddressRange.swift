import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An IPv4 or IPv6 network (`allowedCidrs`, DESIGN §14; Unkey's IP whitelist). A bare address is
/// its own /32 or /128. Host bits must be zero (`10.1.2.3/8` is refused, naming `10.0.0.0/8`).
/// An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is judged as the IPv4 address.
public struct AddressRange: Sendable, Hashable {
    public let network: [UInt8]
    public let prefix: Int

    public static let maxRanges = 100

    public init(_ text: String) throws(DomainError) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let address = Self.parse(String(parts[0])) else {
            throw .invalidField("allowedCidrs", "\(text.prefix(64)) is not an IPv4 or IPv6 address or CIDR")
        }
        let bits = address.count * 8
        var prefix = bits
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...bits).contains(value) else {
                throw .invalidField("allowedCidrs", "\(text.prefix(64)) has a prefix length outside 0-\(bits)")
            }
            prefix = value
        }
        let masked = Self.mask(address, prefix)
        guard masked == address else {
            throw .invalidField(
                "allowedCidrs", "\(text.prefix(64)) has host bits set; did you mean \(Self.text(masked))/\(prefix)?")
        }
        self.network = address
        self.prefix = prefix
    }

    /// `10.0.0.0/8`, `2001:db8::/32`; a single address without its prefix.
    public var text: String {
        prefix == network.count * 8 ? Self.text(network) : "\(Self.text(network))/\(prefix)"
    }

    /// Whether `address` (text, as a gateway forwards it) lies in this range.
    public func contains(_ address: [UInt8]) -> Bool {
        var address = address
        if address.count == 16, network.count == 4, Self.isMappedIPv4(address) { address = Array(address[12...]) }
        guard address.count == network.count else { return false }
        return Self.mask(address, prefix) == network
    }

    static func isMappedIPv4(_ address: [UInt8]) -> Bool {
        address[0..<10].allSatisfy { $0 == 0 } && address[10] == 0xff && address[11] == 0xff
    }

    static func mask(_ address: [UInt8], _ prefix: Int) -> [UInt8] {
        var masked = address
        for i in 0..<masked.count {
            let bits = max(0, min(8, prefix - i * 8))
            masked[i] &= bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        }
        return masked
    }

    /// 4 or 16 bytes, or nil when `text` is not an IP literal.
    public static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
        return nil
    }

    /// `address` (4 or 16 bytes) as text: dotted IPv4, compressed IPv6 (inet_ntop).
    public static func text(_ address: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = address.count == 4 ? AF_INET : AF_INET6
        guard address.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }) != nil
        else { return "" }
        return String(cString: buffer)
    }
}

extension Array where Element == AddressRange {
    /// Whether a token limited to these ranges may be used from `address` (no ranges: anywhere;
    /// an unknown or unparsable address: nowhere).
    public func allow(_ address: String?) -> Bool {
        guard !isEmpty else { return true }
        guard let address, let bytes = AddressRange.parse(address) else { return false }
        return contains { $0.contains(bytes) }
    }

    /// A create body's ranges, checked: at most 100, duplicates dropped.
    public static func checked(_ texts: [String]) throws(DomainError) -> [AddressRange] {
        guard texts.count <= AddressRange.maxRanges else {
            throw .invalidField("allowedCidrs", "must hold at most \(AddressRange.maxRanges) ranges")
        }
        var seen = Set<AddressRange>()
        var checked: [AddressRange] = []
        for text in texts {
            let range = try AddressRange(text)
            if seen.insert(range).inserted { checked.append(range) }
        }
        return checked
    }
}
