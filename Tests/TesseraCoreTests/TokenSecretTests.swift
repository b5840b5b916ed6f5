import Foundation
import Testing

@testable import TesseraCore

/// A generator that always returns the same word: known vectors without mocking the CSPRNG.
struct ConstantGenerator: RandomNumberGenerator {
    let word: UInt64
    mutating func next() -> UInt64 { word }
}

@Suite struct TokenSecretTests {
    @Test func crc32MatchesTheIEEECheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }

    @Test func knownVectorAllZeros() throws {
        var generator = ConstantGenerator(word: 0)
        let secret = TokenSecret.generate(kind: .personal, using: &generator)
        // Computed independently with Python's zlib.crc32 and hashlib.sha256.
        #expect(secret.plaintext == "tsp_" + String(repeating: "0", count: 120) + "60870b0e")
        #expect(secret.hash.hex == "50ce3bee413d2ac324c97e40c270b680432e80de4ab9ce7dc97d2246fd37de8a")
        #expect(secret.displayPrefix == "tsp_00000000")
        #expect(try TokenSecret(parsing: secret.plaintext).hash == secret.hash)
    }

    @Test func knownVectorAllOnesOrganization() throws {
        var generator = ConstantGenerator(word: .max)
        let secret = TokenSecret.generate(kind: .organization, using: &generator)
        #expect(secret.plaintext == "tso_" + String(repeating: "f", count: 120) + "babcf698")
        #expect(secret.hash.hex == "adcff1cc1a346e00488edc5316984d0271f511a630eaecacaba55ef2372d1499")
        #expect(try TokenSecret(parsing: secret.plaintext).kind == .organization)
    }

    @Test(arguments: TokenKind.allCases) func generatedSecretsParse(kind: TokenKind) throws {
        let secret = TokenSecret.generate(kind: kind)
        #expect(secret.plaintext.count == 132)
        #expect(secret.plaintext.hasPrefix(kind.secretPrefix + "_"))
        let parsed = try TokenSecret(parsing: secret.plaintext)
        #expect(parsed.kind == kind)
        #expect(parsed.hash == secret.hash)
        #expect(secret.displayPrefix.count == 12)
        #expect(secret.plaintext.hasPrefix(secret.displayPrefix))
    }

    @Test func generatedSecretsDiffer() {
        let secrets = Set((0..<1000).map { _ in TokenSecret.generate(kind: .personal).plaintext })
        #expect(secrets.count == 1000)
    }

    @Test func descriptionNeverShowsTheSecret() {
        let secret = TokenSecret.generate(kind: .personal)
        #expect(!"\(secret)".contains(secret.plaintext))
        #expect(!String(reflecting: secret).contains(secret.plaintext))
        #expect("\(secret)".hasPrefix(secret.displayPrefix))
    }

    static let valid = TokenSecret.generate(kind: .personal).plaintext

    static let malformed: [(String, TokenFormatError)] = {
        let body = String(valid.dropFirst(4))
        var lastFlipped = Array(valid)
        lastFlipped[lastFlipped.count - 1] = lastFlipped.last == "0" ? "1" : "0"
        var bodyFlipped = Array(valid)
        bodyFlipped[10] = bodyFlipped[10] == "a" ? "b" : "a"
        return [
            ("", .wrongLength),
            ("tsp_", .wrongLength),
            (String(valid.dropLast()), .wrongLength),
            (valid + "0", .wrongLength),
            (valid + " ", .wrongLength),
            (" " + String(valid.dropFirst()), .unknownPrefix),
            ("tsx_" + body, .unknownPrefix),
            ("TSP_" + body, .unknownPrefix),
            ("tsp-" + body, .unknownPrefix),
            ("tso" + body + "0", .unknownPrefix),
            ("tsp_" + body.uppercased(), .invalidCharacter),
            ("tsp_" + "g" + body.dropFirst(), .invalidCharacter),
            ("tsp_" + "\u{0}" + body.dropFirst(), .invalidCharacter),
            ("tsp_" + body.dropLast() + "é", .wrongLength),
            (String(lastFlipped), .badChecksum),
            (String(bodyFlipped), .badChecksum),
            ("tso_" + body, .badChecksum),  // wrong kind keeps the checksum, but hashing differs: see below
        ]
    }()

    @Test(arguments: malformed) func rejectsMalformed(candidate: String, expected: TokenFormatError) {
        if candidate.hasPrefix("tso_") {
            // Same body, other prefix: the checksum covers the body only, so it parses, yet it is
            // another token (its hash differs), so it can never match the original.
            #expect(throws: Never.self) { try TokenSecret(parsing: candidate) }
            #expect(TokenHash(of: candidate) != TokenHash(of: Self.valid))
            return
        }
        #expect(throws: expected) { try TokenSecret(parsing: candidate) }
        #expect(!TokenSecret.isWellFormed(candidate))
    }

    @Test func errorMessagesNeverEchoInput() {
        for (candidate, _) in Self.malformed where !candidate.isEmpty {
            do {
                _ = try TokenSecret(parsing: candidate)
            } catch {
                #expect(!"\(error)".contains(candidate))
            }
        }
    }

    @Test func hashEqualityIsByValue() {
        let a = TokenHash(of: "x")
        #expect(a == TokenHash(of: "x"))
        #expect(a != TokenHash(of: "y"))
        #expect(TokenHash(bytes: a.bytes) == a)
        #expect(TokenHash(bytes: [1, 2, 3]) == nil)
    }
}

@Suite struct ValidationTests {
    @Test(arguments: ["ab", "demo", "a-b", "0org", String(repeating: "a", count: 63)])
    func validSlugs(slug: String) { #expect(Validation.isValidSlug(slug)) }

    @Test(arguments: ["", "a", "-ab", "Demo", "a_b", "a b", "a/b", String(repeating: "a", count: 64), "démo"])
    func invalidSlugs(slug: String) { #expect(!Validation.isValidSlug(slug)) }

    @Test(arguments: ["a", "alice", "Alice.Smith", "bob@example.com", "ci-bot", "u+1"])
    func validUsernames(name: String) { #expect(Validation.isValidUsername(name)) }

    @Test(arguments: ["", ".a", "a b", "a/b", "../x", "a\u{0}", String(repeating: "a", count: 256)])
    func invalidUsernames(name: String) { #expect(!Validation.isValidUsername(name)) }

    @Test func scopeNames() {
        #expect(Validation.isValidScopeName("tokens:read"))
        #expect(Validation.isValidScopeName("api.v2_write-x"))
        #expect(!Validation.isValidScopeName("Tokens"))
        #expect(!Validation.isValidScopeName("1scope"))
        #expect(!Validation.isValidScopeName(""))
        #expect(!Validation.isValidScopeName("a" + String(repeating: "b", count: 64)))
        #expect(BuiltInScope.all.allSatisfy { Validation.isValidScopeName($0.name) })
    }
}

@Suite struct ExpirySpecTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)  // 2027-01-15T08:00:00Z

    @Test func durationsDatesAndNever() throws {
        #expect(try ExpirySpec.parse("30d", now: now) == .at(now.addingTimeInterval(30 * 86_400)))
        #expect(try ExpirySpec.parse("1w", now: now) == .at(now.addingTimeInterval(7 * 86_400)))
        #expect(try ExpirySpec.parse("24H", now: now) == .at(now.addingTimeInterval(86_400)))
        #expect(try ExpirySpec.parse("never", now: now) == .never)
        #expect(try ExpirySpec.parse("2027-12-31", now: now) == .at(Date(timeIntervalSince1970: 1_830_211_200)))
        #expect(
            try ExpirySpec.parse("2027-12-31T18:00:00Z", now: now) == .at(Date(timeIntervalSince1970: 1_830_276_000)))
        #expect(
            try ExpirySpec.parse("2027-12-31T20:00:00+02:00", now: now)
                == .at(Date(timeIntervalSince1970: 1_830_276_000)))
        #expect(
            try ExpirySpec.parse("2027-12-31T18:00:00", now: now) == .at(Date(timeIntervalSince1970: 1_830_276_000)))
    }

    @Test(arguments: [
        "", "30", "d", "-3d", "0d", "3x", "1.5d", "30 days", "2027-13-01", "2027-02-30", "tomorrow", "2020-01-01",
        "999999d",
    ])
    func rejected(_ text: String) {
        #expect(throws: ExpirySpec.ParseError.self) { try ExpirySpec.parse(text, now: now) }
    }

    @Test func pastIsNamed() {
        #expect(throws: ExpirySpec.ParseError(description: "--expires 2020-01-01 is in the past")) {
            try ExpirySpec.parse("2020-01-01", now: now)
        }
    }
}
