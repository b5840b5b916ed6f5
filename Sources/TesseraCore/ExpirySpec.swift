import Foundation

/// `--expires` of the CLI, as BentoML's `api-token create` takes it: a duration from now
/// (`30d`, `1w`, `24h`), a date (`2026-12-31`, midnight UTC at its start), a date-time
/// (`2026-12-31T18:00:00Z`, an offset, or none for UTC), or `never`.
public enum ExpirySpec: Equatable, Sendable {
    case at(Date)
    case never

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    public static func parse(_ text: String, now: Date) throws(ParseError) -> ExpirySpec {
        let value = text.trimmingCharacters(in: .whitespaces).lowercased()
        if value == "never" { return .never }
        if let unit = value.last, let seconds = ["h": 3600.0, "d": 86_400.0, "w": 604_800.0][String(unit)],
            let count = Int(value.dropLast()), value.dropLast().allSatisfy(\.isNumber)
        {
            guard count > 0, count <= 100_000 else {
                throw ParseError(
                    description:
                        "--expires \(text): the duration must be from 1 to 100000 \(unit == "h" ? "hours" : unit == "d" ? "days" : "weeks")"
                )
            }
            return .at(now.addingTimeInterval(Double(count) * seconds))
        }
        guard let date = parseDate(text.trimmingCharacters(in: .whitespaces)) else {
            throw ParseError(
                description: "--expires \(text) is not understood: use a duration (30d, 1w, 24h), a date (2026-12-31), "
                    + "a date-time (2026-12-31T18:00:00Z) or never")
        }
        guard date > now else { throw ParseError(description: "--expires \(text) is in the past") }
        return .at(date)
    }

    private static func parseDate(_ text: String) -> Date? {
        let utc = TimeZone(identifier: "UTC")!
        if text.count == 10 {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = utc
            formatter.dateFormat = "yyyy-MM-dd"
            formatter.isLenient = false
            return formatter.date(from: text)
        }
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime]
        if let date = iso.date(from: text) { return date }
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = iso.date(from: text) { return date }
        // No zone: UTC.
        for format in ["yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm"] {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = utc
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }
}
