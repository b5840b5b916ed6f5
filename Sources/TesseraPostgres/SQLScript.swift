/// Splits a SQL script into statements at top-level semicolons, respecting quotes ('…', "…"),
/// comments (-- and /* */) and dollar-quoted bodies ($$ … $$, $tag$ … $tag$). PostgresNIO speaks
/// the extended protocol, which takes one statement at a time.
public enum SQLScript {
    public static func statements(_ script: String) -> [String] {
        let chars = Array(script.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0

        func flush() {
            let statement = String(current).trimmingWhitespace
            if !statement.isEmpty && !isOnlyComments(statement) { statements.append(statement) }
            current = String.UnicodeScalarView()
        }
        func copy(until end: Int) {
            current.append(contentsOf: chars[index..<min(end, chars.count)])
            index = min(end, chars.count)
        }
        func find(_ needle: [Unicode.Scalar], from start: Int) -> Int {
            var position = start
            while position + needle.count <= chars.count {
                if Array(chars[position..<position + needle.count]) == needle { return position + needle.count }
                position += 1
            }
            return chars.count
        }

        while index < chars.count {
            let char = chars[index]
            let next = index + 1 < chars.count ? chars[index + 1] : nil
            switch char {
            case "'", "\"":
                copy(until: find([char], from: index + 1))
            case "-" where next == "-":
                copy(until: find(["\n"], from: index + 2))
            case "/" where next == "*":
                copy(until: find(["*", "/"], from: index + 2))
            case "$":
                // $tag$ where tag is empty or an identifier
                var end = index + 1
                while end < chars.count,
                    chars[end] == "_" || chars[end].properties.isAlphabetic
                        || ("0"..."9").contains(chars[end])
                {
                    end += 1
                }
                if end < chars.count, chars[end] == "$" {
                    let tag = Array(chars[index...end])
                    copy(until: find(tag, from: end + 1))
                } else {
                    copy(until: index + 1)
                }
            case ";":
                index += 1
                flush()
            default:
                copy(until: index + 1)
            }
        }
        flush()
        return statements
    }

    private static func isOnlyComments(_ statement: String) -> Bool {
        statement.split(separator: "\n").allSatisfy {
            $0.trimmingWhitespace.isEmpty || $0.trimmingWhitespace.hasPrefix("--")
        }
    }
}

extension StringProtocol {
    var trimmingWhitespace: String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
