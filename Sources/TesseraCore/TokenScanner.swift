/// Finds Tessera tokens in text: the engine of `tessera scan` (issue 16, leak response).
///
/// A finding is `tsp_` or `tso_` and exactly 128 lowercase hex characters, standing alone (no
/// letter, digit or `_` just before it, no letter or digit just after it, so a longer hex run never
/// matches), that ``TokenSecret/init(parsing:)`` accepts. Its CRC-32 is what rules out false
/// positives: a random string of the right shape passes with probability 2⁻³², and every near miss
/// (a changed character, one character too few or too many, uppercase) fails.
public enum TokenScanner {
    /// One token found. `secret` holds the plain token: report it for revocation, never print it
    /// (its `description` is redacted).
    public struct Match: Sendable {
        /// 1-based line within the scanned text.
        public let line: Int
        /// 1-based column of the prefix's `t`, counted in UTF-8 bytes as grep and ripgrep count.
        public let column: Int
        public let secret: TokenSecret
    }

    public static func scan(_ text: some StringProtocol) -> [Match] {
        scan(Array(text.utf8))
    }

    /// One pass over `bytes`: only an `_` after `tsp`/`tso` leads to a closer look.
    public static func scan(_ bytes: [UInt8]) -> [Match] {
        var matches: [Match] = []
        var line = 1
        var lineStart = 0
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                line += 1
                lineStart = index + 1
            } else if bytes[index] == UInt8(ascii: "_"), let secret = token(underscoreAt: index, in: bytes) {
                matches.append(Match(line: line, column: index - 3 - lineStart + 1, secret: secret))
                index += TokenSecret.bodyLength  // to the last hex character; the loop steps past it
            }
            index += 1
        }
        return matches
    }

    private static func token(underscoreAt underscore: Int, in bytes: [UInt8]) -> TokenSecret? {
        let start = underscore - 3
        let end = underscore + 1 + TokenSecret.bodyLength
        guard start >= 0, end <= bytes.count,
            bytes[start] == UInt8(ascii: "t"), bytes[start + 1] == UInt8(ascii: "s"),
            bytes[start + 2] == UInt8(ascii: "p") || bytes[start + 2] == UInt8(ascii: "o"),
            start == 0 || !(isAlphanumeric(bytes[start - 1]) || bytes[start - 1] == UInt8(ascii: "_")),
            end == bytes.count || !isAlphanumeric(bytes[end])
        else { return nil }
        return try? TokenSecret(parsing: String(decoding: bytes[start..<end], as: UTF8.self))
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }
}
