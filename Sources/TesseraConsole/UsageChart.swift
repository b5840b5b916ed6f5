import Foundation

/// A stacked bar chart of verifications by outcome as SVG, drawn on the server (DESIGN §14): it
/// reads without JavaScript, takes its colours from the stylesheet (classes, no inline style:
/// the CSP allows none), and carries a summary for screen readers; the page shows the same
/// numbers in a table.
struct UsageChart {
    struct Bar {
        var label: String
        var counts: [Int64]
    }

    static let outcomes = ["valid", "insufficient_scope", "expired", "inactive", "revoked", "address"]
    static let outcomeLabels = ["Valid", "Insufficient scope", "Expired", "Inactive", "Revoked", "Address refused"]

    let bars: [Bar]
    let title: String

    static let width = 720.0
    static let height = 200.0
    static let left = 44.0
    static let bottom = 24.0

    /// The SVG, with every text generated here (numbers and dates), so nothing needs escaping
    /// beyond the title, which is escaped.
    var svg: String {
        let top = bars.map { $0.counts.reduce(0, +) }.max() ?? 0
        let step = Self.niceStep(top)
        let scale = step * 4
        let plotWidth = Self.width - Self.left - 8
        let plotHeight = Self.height - Self.bottom - 10
        let slot = plotWidth / Double(max(bars.count, 1))
        let barWidth = max(1, slot * 0.75)
        var out = """
            <svg class="usage-chart" viewBox="0 0 \(Int(Self.width)) \(Int(Self.height))" role="img" \
            aria-labelledby="chart-title" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">
            <title id="chart-title">\(Self.escape(title))</title>
            """
        for step in 0...4 {
            let value = Self.niceStep(top) * Int64(step)
            let y = 10 + plotHeight - plotHeight * Double(step) / 4
            out += #"<line class="grid" x1="\#(Self.left)" y1="\#(y)" x2="\#(Self.width - 8)" y2="\#(y)"/>"#
            out += #"<text class="axis" x="\#(Self.left - 6)" y="\#(y + 4)" text-anchor="end">\#(value)</text>"#
        }
        for (index, bar) in bars.enumerated() {
            let x = Self.left + Double(index) * slot + (slot - barWidth) / 2
            var y = 10 + plotHeight
            for (outcome, count) in zip(Self.outcomes, bar.counts) where count > 0 {
                let h = scale == 0 ? 0 : plotHeight * Double(count) / Double(scale)
                y -= h
                out +=
                    #"<rect class="bar-\#(outcome)" x="\#(Self.round(x))" y="\#(Self.round(y))" width="\#(Self.round(barWidth))" height="\#(Self.round(h))"/>"#
            }
            // A date every week, and the last day, never two on top of each other.
            if (index % 7 == 0 && index + 4 < bars.count) || index == bars.count - 1 {
                out +=
                    #"<text class="axis" x="\#(Self.round(x + barWidth / 2))" y="\#(Self.height - 6)" text-anchor="middle">\#(bar.label)</text>"#
            }
        }
        return out + "</svg>"
    }

    /// The grid's step: the smallest of 1, 2, 5 × 10ⁿ whose four steps reach `value`, so the
    /// axis reads in round numbers (0, 2, 4, 6, 8 for a busiest day of 7).
    static func niceStep(_ value: Int64) -> Int64 {
        var magnitude: Int64 = 1
        while true {
            for factor: Int64 in [1, 2, 5] where factor * magnitude * 4 >= value { return factor * magnitude }
            magnitude *= 10
        }
    }

    static func round(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
