import Crypto

/// A plain token secret: `<tsp|tso>_<120 random hex><8 hex CRC-32 of the random hex>` (DESIGN §3).
///
/// The plain value exists only between generation and the create/rotate response. It is never
/// stored, logged or compared: the database holds ``hash`` (SHA-256 of the whole string) and
/// ``displayPrefix``. `description` is redacted so that string interpolation cannot leak it.
public struct TokenSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Random part: 60 bytes from the system CSPRNG, 120 hex characters.
    public static let randomByteCount = 60
    public static let randomHexCount = randomByteCount * 2
    public static let checksumHexCount = 8
    public static let bodyLength = randomHexCount + checksumHexCount
    /// `tsp_` + 128 hex characters.
    public static let length = 4 + bodyLength
    /// Characters of the body shown in ``displayPrefix``: 32 of the 480 random bits, enough to tell
    /// tokens apart in a list, far too few to help guess one.
    public static let displayBodyCount = 8

    public let kind: TokenKind
    /// The whole plain token. Hand it to the caller once; never log it.
    public let plaintext: String

    private init(kind: TokenKind, plaintext: String) {
        self.kind = kind
        self.plaintext = plaintext
    }

    /// Generates a new secret from the system's cryptographically secure generator.
    public static func generate(kind: TokenKind) -> TokenSecret {
        var generator = SystemRandomNumberGenerator()
        return generate(kind: kind, using: &generator)
    }

    /// Generates a secret from `generator`; tests pass a seeded one to get known vectors.
    public static func generate(kind: TokenKind, using generator: inout some RandomNumberGenerator) -> TokenSecret {
        var random = [UInt8]()
        random.reserveCapacity(randomByteCount + 8)
        while random.count < randomByteCount {
            withUnsafeBytes(of: generator.next().littleEndian) { random.append(contentsOf: $0) }
        }
        random.removeLast(random.count - randomByteCount)
        let randomHex = Hex.encode(random)
        return TokenSecret(kind: kind, plaintext: "\(kind.secretPrefix)_\(randomHex)\(checksumHex(of: randomHex))")
    }

    /// Validates a presented string offline: prefix, length, alphabet and checksum.
    /// Nothing here touches a database, so garbage is rejected at the cost of one CRC.
    public init(parsing candidate: some StringProtocol) throws(TokenFormatError) {
        let utf8 = candidate.utf8
        guard utf8.count == Self.length else { throw .wrongLength }
        let bytes = Array(utf8)
        guard bytes[3] == UInt8(ascii: "_"),
            let kind = TokenKind(secretPrefix: String(decoding: bytes[0..<3], as: UTF8.self))
        else { throw .unknownPrefix }
        let body = bytes[4...]
        guard body.allSatisfy(Hex.isLowercaseDigit) else { throw .invalidCharacter }
        let random = body.prefix(Self.randomHexCount)
        let checksum = body.suffix(Self.checksumHexCount)
        guard Hex.parseUInt32(checksum) == CRC32.checksum(random) else { throw .badChecksum }
        self.init(kind: kind, plaintext: String(decoding: bytes, as: UTF8.self))
    }

    /// Is `candidate` token-shaped? Cheap enough for the hot path.
    public static func isWellFormed(_ candidate: some StringProtocol) -> Bool {
        (try? TokenSecret(parsing: candidate)) != nil
    }

    /// SHA-256 of the whole token string: the only form in which a secret reaches the database.
    public var hash: TokenHash { TokenHash(of: plaintext) }

    /// Non-secret display hint, e.g. `tsp_3f9a2c1b`.
    public var displayPrefix: String { String(plaintext.prefix(4 + Self.displayBodyCount)) }

    public var description: String { "\(displayPrefix)…(redacted)" }
    public var debugDescription: String { "TokenSecret(\(description))" }

    static func checksumHex(of randomHex: String) -> String {
        Hex.encode(CRC32.checksum(randomHex.utf8))
    }
}

/// Why a presented string is not a token. The messages never echo the input.
public enum TokenFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    case wrongLength
    case unknownPrefix
    case invalidCharacter
    case badChecksum

    public var description: String {
        switch self {
        case .wrongLength: "token has the wrong length"
        case .unknownPrefix: "token prefix is not tsp_ or tso_"
        case .invalidCharacter: "token contains characters other than lowercase hex"
        case .badChecksum: "token checksum does not match"
        }
    }
}

/// SHA-256 digest of a token string, 32 bytes. Equality is constant-time.
public struct TokenHash: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(of plaintext: String) {
        self.bytes = Array(SHA256.hash(data: Array(plaintext.utf8)))
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// From ``hex`` (64 lowercase hex digits).
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64, utf8.allSatisfy(Hex.isLowercaseDigit) else { return nil }
        self.bytes = stride(from: 0, to: 64, by: 2).map {
            UInt8(Hex.value(of: utf8[$0]) << 4 | Hex.value(of: utf8[$0 + 1]))
        }
    }

    public static func == (lhs: TokenHash, rhs: TokenHash) -> Bool {
        var difference: UInt8 = 0
        for (left, right) in zip(lhs.bytes, rhs.bytes) { difference |= left ^ right }
        return difference == 0 && lhs.bytes.count == rhs.bytes.count
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(bytes) }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { "sha256:\(hex.prefix(12))…" }
}
