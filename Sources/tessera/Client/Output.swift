import ArgumentParser
import Foundation
import TesseraAPI

/// `-o table|json|yaml`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, yaml
}

/// Writes what client commands print: aligned tables for people, JSON or YAML with the server's
/// field names for scripts. Colours only on a terminal, never with `NO_COLOR` or `TERM=dumb`.
struct Printer {
    let format: OutputFormat
    let colors: Bool

    init(format: OutputFormat) {
        self.format = format
        let environment = ProcessInfo.processInfo.environment
        colors = isatty(STDOUT_FILENO) == 1 && environment["NO_COLOR"] == nil && environment["TERM"] != "dumb"
    }

    func write(_ text: String) {
        FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    /// JSON or YAML of `value` (with the server's field names); false in table mode.
    func structured(_ value: some Encodable) -> Bool {
        guard format != .table else { return false }
        // Through JSONSerialization, so both formats print what the server's JSON holds, nulls included.
        let object =
            (try? JSONEncoder().encode(value)).flatMap {
                try? JSONSerialization.jsonObject(with: $0, options: [.fragmentsAllowed])
            } ?? NSNull()
        write(format == .json ? JSON.string(object) : YAML.string(object))
        return true
    }

    func table(_ headers: [String], _ rows: [[String]]) {
        guard !rows.isEmpty else {
            write("(none)")
            return
        }
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], Self.visibleCount(cell)) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - Self.visibleCount(cell))
            }.joined(separator: "  ")
        }
        var out = [paint(line(headers), .bold)]
        out += rows.map(line)
        write(out.joined(separator: "\n"))
    }

    /// `key: value` lines of one object, keys aligned.
    func fields(_ pairs: [(String, String)]) {
        let width = pairs.map(\.0.count).max() ?? 0
        write(
            pairs.map { paint($0.0 + ":", .bold) + String(repeating: " ", count: width - $0.0.count + 1) + $0.1 }
                .joined(separator: "\n"))
    }

    enum Style: String {
        case bold = "1", red = "31", yellow = "33", green = "32", dim = "2"
    }

    func paint(_ text: String, _ style: Style) -> String {
        colors ? "\u{1B}[\(style.rawValue)m\(text)\u{1B}[0m" : text
    }

    private static func visibleCount(_ text: String) -> Int {
        text.replacingOccurrences(of: #"\u001B\[[0-9;]*m"#, with: "", options: .regularExpression).count
    }

    /// The new secret, once, framed, with the warning.
    func secretBox(_ token: String, title: String) {
        let lines = [title, "", token, "", "Copy it now: it will not be shown again."]
        let width = lines.map(\.count).max() ?? 0
        var out = ["┌" + String(repeating: "─", count: width + 2) + "┐"]
        for line in lines {
            let body = line == token ? paint(token, .green) : line
            out.append("│ " + body + String(repeating: " ", count: width - line.count) + " │")
        }
        out.append("└" + String(repeating: "─", count: width + 2) + "┘")
        write(out.joined(separator: "\n"))
    }

    // MARK: Cells

    static func date(_ seconds: Int64?) -> String {
        guard let seconds else { return "Never" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    static func text(_ value: String?) -> String { value ?? "-" }

    static func text(_ values: [String]) -> String { values.isEmpty ? "-" : values.joined(separator: ",") }

    static func text(_ flag: Bool) -> String { flag ? "yes" : "no" }

    static func text(_ number: Int?) -> String { number.map(String.init) ?? "-" }

    /// A token's state for people: active, or what stops it, marked.
    func state(of token: TokenInfo) -> String {
        if token.status == "revoked" {
            return paint("revoked" + (token.revokedReason.map { " (\($0))" } ?? ""), .red)
        }
        if token.status == "inactive" { return paint("inactive", .yellow) }
        if token.isExpired { return paint("expired", .red) }
        return token.status
    }
}

enum JSON {
    /// A JSON boolean as JSONSerialization gives it (a Swift Bool, or an NSNumber of type char).
    static func bool(_ value: Any) -> Bool? {
        if type(of: value) == Bool.self { return value as? Bool }
        if let number = value as? NSNumber, String(cString: number.objCType) == "c" { return number.boolValue }
        return nil
    }

    static func string(_ value: Any) -> String {
        let data =
            (try? JSONSerialization.data(
                withJSONObject: value,
                options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]))
            ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// Enough YAML for JSON-shaped values: block mappings and sequences, keys sorted, strings
/// double-quoted when a plain scalar would be read back as something else.
enum YAML {
    static func string(_ value: Any) -> String {
        var lines: [String] = []
        emit(value, indent: 0, into: &lines, inline: nil)
        return lines.joined(separator: "\n")
    }

    private static func emit(_ value: Any, indent: Int, into lines: inout [String], inline prefix: String?) {
        let pad = String(repeating: "  ", count: indent)
        switch value {
        case let object as [String: Any]:
            if object.isEmpty {
                lines.append((prefix ?? pad) + "{}")
                return
            }
            var first = true
            for key in object.keys.sorted() {
                let lead = first && prefix != nil ? prefix! : pad
                first = false
                let child = object[key]!
                if isScalar(child) || isEmptyCollection(child) {
                    lines.append(lead + scalarKey(key) + ": " + scalar(child))
                } else {
                    lines.append(lead + scalarKey(key) + ":")
                    emit(child, indent: indent + 1, into: &lines, inline: nil)
                }
            }
        case let array as [Any]:
            if array.isEmpty {
                lines.append((prefix ?? pad) + "[]")
                return
            }
            for item in array {
                if isScalar(item) || isEmptyCollection(item) {
                    lines.append(pad + "- " + scalar(item))
                } else {
                    emit(item, indent: indent + 1, into: &lines, inline: pad + "- ")
                }
            }
        default:
            lines.append((prefix ?? pad) + scalar(value))
        }
    }

    private static func isScalar(_ value: Any) -> Bool { !(value is [String: Any]) && !(value is [Any]) }

    private static func isEmptyCollection(_ value: Any) -> Bool {
        (value as? [String: Any])?.isEmpty == true || (value as? [Any])?.isEmpty == true
    }

    private static func scalarKey(_ key: String) -> String { plainIsSafe(key) ? key : quoted(key) }

    static func scalar(_ value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case let object as [String: Any] where object.isEmpty: return "{}"
        case let array as [Any] where array.isEmpty: return "[]"
        case let flag where JSON.bool(flag) != nil: return JSON.bool(flag)! ? "true" : "false"
        case let number as NSNumber: return "\(number)"
        case let text as String: return plainIsSafe(text) ? text : quoted(text)
        default: return quoted("\(value)")
        }
    }

    private static func plainIsSafe(_ text: String) -> Bool {
        guard let first = text.first, !text.hasSuffix(" "), !text.hasPrefix(" ") else { return false }
        if "-?:,[]{}#&*!|>'\"%@`".contains(first) { return false }
        if text.contains(": ") || text.contains(" #") || text.hasSuffix(":") { return false }
        if text.contains(where: { $0.isNewline || ($0.asciiValue.map { $0 < 32 } ?? false) }) { return false }
        let lowered = text.lowercased()
        if ["null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"].contains(lowered) { return false }
        if Double(text) != nil || Int(text) != nil || text.hasPrefix("0x") || text.hasPrefix("0o") { return false }
        if text.range(of: #"^[0-9]{4}-[0-9]{2}-[0-9]{2}"#, options: .regularExpression) != nil { return false }
        return true
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\x%02X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
