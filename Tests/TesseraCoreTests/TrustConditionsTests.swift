import Foundation
import TesseraCore
import Testing

/// Trust policy conditions (DESIGN §13): `*` globs within a claim's text, and the rule that a
/// policy pins down who may exchange.
@Suite struct TrustConditionsTests {
    @Test(arguments: [
        ("repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main", true),
        ("repo:acme/app:*", "repo:acme/app:ref:refs/heads/main", true),
        ("repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main", true),
        ("repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/evil", false),
        ("repo:acme/app", "repo:acme/app2", false),
        ("*", "", true),
        ("a*b*c", "abc", true),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbY", false),
        ("refs/heads/*", "refs/heads/", true),
        ("Acme/*", "acme/app", false),
        ("**", "anything", true),
    ])
    func globs(_ pattern: String, _ value: String, _ matches: Bool) {
        #expect(TrustConditions.glob(pattern, matches: value) == matches, "\(pattern) ~ \(value)")
    }

    @Test func allConditionsMustMatchAndAnAbsentClaimNeverDoes() {
        let conditions = TrustConditions(["repository": "acme/app", "ref": "refs/heads/*"])
        let claims = ["repository": "acme/app", "ref": "refs/heads/main"]
        #expect(conditions.match { claims[$0] })
        #expect(!conditions.match { ["repository": "acme/app"][$0] })
        #expect(!conditions.match { ["repository": "acme/other", "ref": "refs/heads/main"][$0] })
    }

    @Test func aPolicyMustPinTheWorkload() throws {
        try TrustConditions(["sub": "repo:acme/app:*"]).validate()
        try TrustConditions(["repository": "acme/app"]).validate()
        try TrustConditions(["project_path": "acme/app", "ref": "main"]).validate()
        #expect(throws: DomainError.self) { try TrustConditions(["ref": "refs/heads/main"]).validate() }
        #expect(throws: DomainError.self) { try TrustConditions(["sub": "*"]).validate() }
        #expect(throws: DomainError.self) { try TrustConditions(["sub": "**"]).validate() }
        #expect(throws: DomainError.self) { try TrustConditions([:]).validate() }
        #expect(throws: DomainError.self) { try TrustConditions(["sub": "x", "bad claim": "y"]).validate() }
        #expect(throws: DomainError.self) { try TrustConditions(["sub": "line\nbreak"]).validate() }
        let many = Dictionary(uniqueKeysWithValues: (0..<21).map { ("c\($0)", "v") }).merging(["sub": "x"]) { a, _ in a
        }
        #expect(throws: DomainError.self) { try TrustConditions(many).validate() }
    }
}
