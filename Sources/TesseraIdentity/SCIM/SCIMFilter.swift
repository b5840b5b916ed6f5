import Foundation

/// A SCIM filter (RFC 7644 §3.4.2.2): `userName eq "bjensen"`, `externalId eq "00u1" and active eq
/// true`, `emails[type eq "work" and value co "@example.com"]`, `not (title pr)`. Parsed once,
/// then evaluated on resources as the API shows them; the store narrows what it can (an `eq` on an
/// indexed attribute at the top level) before that.
public indirect enum SCIMFilter: Sendable, Equatable {
    case compare(AttributePath, Operator, JSONValue)
    case present(AttributePath)
    case and(SCIMFilter, SCIMFilter)
    case or(SCIMFilter, SCIMFilter)
    case not(SCIMFilter)
    /// `emails[type eq "work"]`: an element of a multi-valued attribute matches the inner filter.
    case valuePath(AttributePath, SCIMFilter)

    public enum Operator: String, Sendable {
        case eq, ne, co, sw, ew, gt, ge, lt, le
    }

    /// `name.givenName`, with any schema URN prefix dropped; names compare case-insensitively.
    public struct AttributePath: Sendable, Equatable {
        public var names: [String]

        public init(_ text: String) {
            var text = text
            // urn:ietf:params:scim:schemas:core:2.0:User:name.givenName
            if text.lowercased().hasPrefix("urn:"), let colon = text.lastIndex(of: ":") {
                text = String(text[text.index(after: colon)...])
            }
            names = text.split(separator: ".").map(String.init)
        }

        public static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.names.map { $0.lowercased() } == rhs.names.map { $0.lowercased() }
        }

        /// `userName` for a one-name path.
        public func isAttribute(_ name: String) -> Bool {
            names.count == 1 && names[0].lowercased() == name.lowercased()
        }
    }

    /// Parses `text`; a malformed filter is ``SCIMError/invalidFilter(_:)``.
    public init(parsing text: String) throws(SCIMError) {
        var parser = Parser(tokens: try Lexer.tokens(text))
        let filter = try parser.orExpression()
        guard parser.atEnd else { throw SCIMError.invalidFilter("unexpected \(parser.describeNext()) in the filter") }
        self = filter
    }

    /// The value of a top-level `attribute eq "value"` conjunct (`userName eq "x" and …`), which
    /// the store can look up by index before the whole filter is applied.
    public func equality(on attribute: String) -> String? {
        switch self {
        case .compare(let path, .eq, .string(let value)) where path.isAttribute(attribute): return value
        case .and(let left, let right): return left.equality(on: attribute) ?? right.equality(on: attribute)
        default: return nil
        }
    }

    /// Whether `resource` (as the API shows it) matches.
    public func matches(_ resource: JSONValue) -> Bool {
        switch self {
        case .and(let left, let right): return left.matches(resource) && right.matches(resource)
        case .or(let left, let right): return left.matches(resource) || right.matches(resource)
        case .not(let inner): return !inner.matches(resource)
        case .present(let path):
            return Self.values(at: path.names, in: resource).contains { value in
                switch value {
                case .null: false
                case .string(let text): !text.isEmpty
                case .array(let items): !items.isEmpty
                default: true
                }
            }
        case .compare(let path, let op, let expected):
            let caseExact = path.isAttribute("id") || path.isAttribute("externalId")
            return Self.values(at: path.names, in: resource).contains {
                Self.compare($0, op, expected, caseExact: caseExact)
            }
        case .valuePath(let path, let inner):
            return Self.elements(at: path.names, in: resource).contains { inner.matches($0) }
        }
    }

    /// The elements at `names` themselves (a value path's filter applies to each whole element).
    static func elements(at names: [String], in value: JSONValue) -> [JSONValue] {
        if case .array(let items) = value { return items.flatMap { elements(at: names, in: $0) } }
        guard let first = names.first else { return [value] }
        guard let child = value[first] else { return [] }
        return elements(at: Array(names.dropFirst()), in: child)
    }

    /// Every value at `names` (multi-valued attributes fan out; a complex multi-valued attribute
    /// without a sub-attribute compares its elements' `value`, RFC 7644 §3.4.2.2).
    static func values(at names: [String], in value: JSONValue) -> [JSONValue] {
        if case .array(let items) = value { return items.flatMap { values(at: names, in: $0) } }
        guard let first = names.first else {
            if case .object = value, let inner = value["value"] { return [inner] }
            return [value]
        }
        guard let child = value[first] else { return [] }
        return values(at: Array(names.dropFirst()), in: child)
    }

    static func compare(_ actual: JSONValue, _ op: Operator, _ expected: JSONValue, caseExact: Bool) -> Bool {
        switch (actual, expected) {
        case (.string(var a), .string(var b)):
            if !caseExact {
                a = a.lowercased()
                b = b.lowercased()
            }
            switch op {
            case .eq: return a == b
            case .ne: return a != b
            case .co: return a.contains(b)
            case .sw: return a.hasPrefix(b)
            case .ew: return a.hasSuffix(b)
            case .gt: return a > b
            case .ge: return a >= b
            case .lt: return a < b
            case .le: return a <= b
            }
        case (.number(let a), .number(let b)):
            switch op {
            case .eq: return a == b
            case .ne: return a != b
            case .gt: return a > b
            case .ge: return a >= b
            case .lt: return a < b
            case .le: return a <= b
            default: return false
            }
        default:
            // Booleans (Entra's "True" too) and null: equality only.
            let a = actual.bool.map(JSONValue.bool) ?? actual
            let b = expected.bool.map(JSONValue.bool) ?? expected
            switch op {
            case .eq: return a == b
            case .ne: return a != b
            default: return false
            }
        }
    }
}

private enum Token: Equatable {
    case word(String)
    case string(String)
    case open, close, openBracket, closeBracket
}

private enum Lexer {
    static func tokens(_ text: String) throws(SCIMError) -> [Token] {
        guard text.count <= 4096 else { throw SCIMError.invalidFilter("the filter is longer than 4096 characters") }
        var tokens: [Token] = []
        var characters = Array(text)[...]
        while let c = characters.first {
            switch c {
            case " ", "\t", "\n", "\r": characters.removeFirst()
            case "(": tokens.append(.open); characters.removeFirst()
            case ")": tokens.append(.close); characters.removeFirst()
            case "[": tokens.append(.openBracket); characters.removeFirst()
            case "]": tokens.append(.closeBracket); characters.removeFirst()
            case "\"":
                characters.removeFirst()
                var value = ""
                var closed = false
                while let d = characters.first {
                    characters.removeFirst()
                    if d == "\\" {
                        guard let escaped = characters.first else { break }
                        characters.removeFirst()
                        switch escaped {
                        case "n": value.append("\n")
                        case "t": value.append("\t")
                        default: value.append(escaped)
                        }
                    } else if d == "\"" {
                        closed = true
                        break
                    } else {
                        value.append(d)
                    }
                }
                guard closed else { throw SCIMError.invalidFilter("a string in the filter is not closed") }
                tokens.append(.string(value))
            default:
                var word = ""
                while let d = characters.first, !" \t\n\r()[]\"".contains(d) {
                    word.append(d)
                    characters.removeFirst()
                }
                tokens.append(.word(word))
            }
        }
        return tokens
    }
}

private struct Parser {
    var tokens: [Token]
    var position = 0

    var atEnd: Bool { position == tokens.count }

    func describeNext() -> String {
        guard position < tokens.count else { return "end" }
        switch tokens[position] {
        case .word(let word): return "'\(word)'"
        case .string(let text): return "\"\(text)\""
        case .open: return "'('"
        case .close: return "')'"
        case .openBracket: return "'['"
        case .closeBracket: return "']'"
        }
    }

    mutating func next() -> Token? {
        guard position < tokens.count else { return nil }
        defer { position += 1 }
        return tokens[position]
    }

    func peekWord(_ word: String) -> Bool {
        guard position < tokens.count, case .word(let next) = tokens[position] else { return false }
        return next.lowercased() == word
    }

    mutating func orExpression() throws(SCIMError) -> SCIMFilter {
        var left = try andExpression()
        while peekWord("or") {
            position += 1
            left = .or(left, try andExpression())
        }
        return left
    }

    mutating func andExpression() throws(SCIMError) -> SCIMFilter {
        var left = try unary()
        while peekWord("and") {
            position += 1
            left = .and(left, try unary())
        }
        return left
    }

    mutating func unary() throws(SCIMError) -> SCIMFilter {
        if peekWord("not") {
            position += 1
            guard next() == .open else { throw SCIMError.invalidFilter("'not' must be followed by '('") }
            let inner = try orExpression()
            guard next() == .close else { throw SCIMError.invalidFilter("a '(' is not closed") }
            return .not(inner)
        }
        if position < tokens.count, tokens[position] == .open {
            position += 1
            let inner = try orExpression()
            guard next() == .close else { throw SCIMError.invalidFilter("a '(' is not closed") }
            return inner
        }
        guard case .word(let attribute)? = next(), Self.isAttributePath(attribute) else {
            position -= position > 0 ? 1 : 0
            throw SCIMError.invalidFilter("expected an attribute name, found \(describeNext())")
        }
        let path = SCIMFilter.AttributePath(attribute)
        if position < tokens.count, tokens[position] == .openBracket {
            position += 1
            let inner = try orExpression()
            guard next() == .closeBracket else { throw SCIMError.invalidFilter("a '[' is not closed") }
            return .valuePath(path, inner)
        }
        guard case .word(let opWord)? = next() else {
            throw SCIMError.invalidFilter("expected an operator after \(attribute)")
        }
        if opWord.lowercased() == "pr" { return .present(path) }
        guard let op = SCIMFilter.Operator(rawValue: opWord.lowercased()) else {
            throw SCIMError.invalidFilter("unknown operator '\(opWord)'")
        }
        switch next() {
        case .string(let text)?: return .compare(path, op, .string(text))
        case .word(let word)?:
            switch word.lowercased() {
            case "true": return .compare(path, op, .bool(true))
            case "false": return .compare(path, op, .bool(false))
            case "null": return .compare(path, op, .null)
            default:
                guard let number = Double(word) else {
                    throw SCIMError.invalidFilter("'\(word)' is not a value: quote strings")
                }
                return .compare(path, op, .number(number))
            }
        default: throw SCIMError.invalidFilter("expected a value after '\(opWord)'")
        }
    }

    static func isAttributePath(_ word: String) -> Bool {
        guard let first = word.first, first.isLetter else { return false }
        return word.allSatisfy { $0.isLetter || $0.isNumber || "._:-$".contains($0) }
    }
}
