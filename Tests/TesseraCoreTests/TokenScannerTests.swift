import Testing

@testable import TesseraCore

/// SplitMix64: reproducible "random" text, so a 2⁻³² coincidence cannot make the suite flaky.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct TokenScannerTests {
    static let personal = TokenSecret.generate(kind: .personal).plaintext
    static let organization = TokenSecret.generate(kind: .organization).plaintext

    /// `text` with the token at 1-based column `column`.
    @Test(arguments: [
        ("\(personal)", 1),
        ("API_KEY=\(personal)", 9),
        ("export TESSERA_API_KEY=\"\(personal)\"", 25),
        ("token: '\(personal)'", 9),
        (#"{"token":"\#(personal)","x":1}"#, 11),
        ("curl -H 'Authorization: Bearer \(personal)' https://x", 32),
        ("https://ci.example.com/hook?token=\(personal)&x=1", 35),
        ("https://\(personal)@git.example.com/repo.git", 9),
        ("(\(personal)).", 2),
        ("\t\(personal)_old", 2),
        ("π = \(personal)", 6),  // columns count UTF-8 bytes: π is two
    ])
    func findsAnEmbeddedToken(text: String, column: Int) throws {
        let matches = TokenScanner.scan(text)
        #expect(matches.count == 1)
        let match = try #require(matches.first)
        #expect(match.line == 1)
        #expect(match.column == column)
        #expect(match.secret.plaintext == Self.personal)
        #expect(match.secret.kind == .personal)
    }

    @Test func twoTokensOnALineAndLinesCounted() {
        let text = "first line\nA=\(Self.personal) B=\(Self.organization)\n\n  \(Self.organization)\n"
        let matches = TokenScanner.scan(text)
        #expect(matches.map(\.line) == [2, 2, 4])
        #expect(matches.map(\.column) == [3, 3 + 132 + 3, 3])
        #expect(matches.map(\.secret.kind) == [.personal, .organization, .organization])
        #expect(matches.map(\.secret.plaintext) == [Self.personal, Self.organization, Self.organization])
        #expect(TokenScanner.scan("\(Self.personal)\(Self.organization)").isEmpty)  // glued: neither stands alone
    }

    static let nearMisses: [String] = {
        let token = personal
        let body = String(token.dropFirst(4))
        var flipped = Array(token)
        flipped[token.count - 1] = flipped.last == "0" ? "1" : "0"
        var flippedRandom = Array(token)
        flippedRandom[20] = flippedRandom[20] == "a" ? "b" : "a"
        return [
            String(flipped),  // checksum character changed
            String(flippedRandom),  // random character changed
            String(token.dropLast()),  // truncated
            "x=\(token.dropLast()) y",
            token + "0",  // one hex character too many
            token + "ab12",
            "0" + token,  // inside a longer run
            "_" + token,
            "a" + token,
            "tsp_" + body.uppercased(),
            "TSP_" + body,
            "tsx_" + body,
            "tsp-" + body,
            "tsp_" + body.dropLast() + "g",
            "tsp_" + body.dropLast() + "G",
            "tsp_" + String(repeating: "0", count: 128),
        ]
    }()

    @Test(arguments: nearMisses) func nearMissesAreNotFindings(text: String) {
        #expect(TokenScanner.scan(text).isEmpty)
        #expect(TokenScanner.scan("key = \"\(text)\"\n").isEmpty)
    }

    /// `tsp_`/`tso_` and 128 random hex characters: token-shaped, but the last 8 are not the CRC.
    @Test func randomHexIsNeverAFinding() {
        var generator = SeededGenerator(state: 16)
        let hex = Array("0123456789abcdef")
        let lines = (0..<10_000).map { number in
            let body = String((0..<TokenSecret.bodyLength).map { _ in hex.randomElement(using: &generator)! })
            return ["tsp_", "tso_", "key=tsp_", "\"tso_"][number % 4] + body
        }
        #expect(TokenScanner.scan(lines.joined(separator: "\n")).isEmpty)
        // The same random parts with their checksum are all found: the lines were shaped right.
        let fixed = lines.map { line in
            let random = String(line.suffix(TokenSecret.bodyLength).prefix(TokenSecret.randomHexCount))
            return line.dropLast(TokenSecret.bodyLength) + random + TokenSecret.checksumHex(of: random)
        }
        #expect(TokenScanner.scan(fixed.joined(separator: "\n")).count == lines.count)
    }
}
