import Foundation
import TesseraCore
import Testing

/// The migrations match audit actions and write webhook event names as SQL string literals: a
/// case renamed in Swift must not silently stop its webhooks.
@Suite struct AuditActionTests {
    static let sql: String = {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../sql")
            .standardized
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return files.filter { $0.hasSuffix(".sql") }.sorted().compactMap {
            try? String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8)
        }.joined(separator: "\n")
    }()

    /// The quoted strings of every match of `pattern`'s first group.
    static func literals(_ pattern: String) throws -> Set<String> {
        let expression = try NSRegularExpression(pattern: pattern, options: [.dotMatchesLineSeparators])
        let quoted = try NSRegularExpression(pattern: "'([a-z_]+\\.[a-z_]+)'")
        var found = Set<String>()
        for match in expression.matches(in: sql, range: NSRange(sql.startIndex..., in: sql)) {
            let text = String(sql[Range(match.range(at: 1), in: sql)!])
            for literal in quoted.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                found.insert(String(text[Range(literal.range(at: 1), in: text)!]))
            }
        }
        return found
    }

    @Test func everyActionTheTriggersMatchIsACase() throws {
        // `NEW.action IN (...)` in the trigger's WHEN, and each `WHEN '...'` of its CASE.
        let matched = try Self.literals(#"NEW\.action\s+IN\s*\(([^)]*)\)"#)
            .union(Self.literals(#"WHEN\s+([^;]*?)\s+THEN"#))
        #expect(matched.count >= 5, "\(matched)")
        for action in matched {
            #expect(AuditAction(rawValue: action) != nil, "sql matches \(action), which is no AuditAction")
        }
    }

    @Test func everyEventNameInTheSQLIsAWebhookEventOrAnAction() throws {
        let named = try Self.literals(#"(.*)"#).filter {
            $0.hasPrefix("token.") || $0.hasPrefix("member.") || $0.hasPrefix("trust_policy.")
        }
        for name in named {
            #expect(WebhookEvent(rawValue: name) != nil || AuditAction(rawValue: name) != nil, "sql names \(name)")
        }
        // and the SQL writes every event a webhook may ask for
        #expect(Set(WebhookEvent.names).isSubset(of: named), "\(named)")
    }

    @Test func limitsRefuseWithTheFieldNamed() {
        #expect(throws: DomainError.invalidField("name", "must be 1 to 200 characters, without control characters")) {
            try Limits.checkName("")
        }
        #expect(throws: DomainError.self) { try Limits.checkName("a\u{0}b") }
        #expect(throws: Never.self) { try Limits.checkName(String(repeating: "x", count: 200)) }
        #expect(throws: DomainError.self) { try Limits.checkDescription(String(repeating: "x", count: 1001)) }
        #expect(throws: Never.self) { try Limits.checkDescription("two\nlines") }
        #expect(throws: DomainError.self) { try Limits.checkGroups(Array(repeating: "g", count: 101)) }
        #expect(throws: DomainError.self, "a group name over 200") {
            try Limits.checkGroups([String(repeating: "g", count: 201)])
        }
    }
}
