import Foundation

/// Lowercase hexadecimal helpers for token bodies and digests.
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func encode(_ value: UInt32) -> String {
        encode([UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)])
    }

    static func digit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? nibble + 48 : nibble + 87 }

    static func isLowercaseDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }

    static func value(of byte: UInt8) -> UInt32 {
        byte <= UInt8(ascii: "9") ? UInt32(byte - UInt8(ascii: "0")) : UInt32(byte - UInt8(ascii: "a") + 10)
    }

    /// Parses 8 lowercase hex digits already known to be valid.
    static func parseUInt32(_ digits: some Collection<UInt8>) -> UInt32 {
        digits.reduce(0) { ($0 << 4) | value(of: $1) }
    }
}

extension UUID {
    /// `uuidString.lowercased()` made in one allocation: the token id the hot path answers with,
    /// built per verification instead of kept in every cache entry.
    public var lowercasedString: String {
        withUnsafeBytes(of: uuid) { raw in
            String(unsafeUninitializedCapacity: 36) { out in
                var at = 0
                for (index, byte) in raw.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        out[at] = UInt8(ascii: "-")
                        at += 1
                    }
                    out[at] = Hex.digit(byte >> 4)
                    out[at + 1] = Hex.digit(byte & 0x0F)
                    at += 2
                }
                return at
            }
        }
    }
}
