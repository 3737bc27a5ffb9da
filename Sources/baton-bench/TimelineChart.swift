import Foundation

/// An SVG chart of a run: one panel per scenario with its p99 latency per 100 ms
/// (log scale), its failed requests (red bars) and its reload windows (shaded).
enum TimelineChart {
    static func svg(_ report: BenchReport) -> String {
        let width = 960.0
        let panelHeight = 130.0
        let left = 70.0
        let right = 20.0
        let top = 30.0
        let gap = 34.0
        let plotWidth = width - left - right
        let height = top + Double(report.scenarios.count) * (panelHeight + gap) + 20
        let duration = max(report.scenarios.map(\.seconds).max() ?? 1, 1)
        // Latency axis: 0.1 ms to 1 s, logarithmic.
        let lowest = log10(100.0)
        let highest = log10(1_000_000.0)
        func x(_ seconds: Double) -> Double { left + seconds / duration * plotWidth }

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="18" font-size="13">p99 latency per 100 ms (log scale, blue), failed requests per 100 ms (red, taller for more), \
            reload windows (shaded)</text>

            """
        for (index, result) in report.scenarios.enumerated() {
            let panelTop = top + Double(index) * (panelHeight + gap) + 14
            func y(_ microseconds: UInt64) -> Double {
                let value = min(max(log10(Double(max(microseconds, 1))), lowest), highest)
                return panelTop + panelHeight - (value - lowest) / (highest - lowest) * panelHeight
            }
            svg +=
                "<text x=\"\(left)\" y=\"\(panelTop - 4)\" font-weight=\"bold\">\(result.scenario.rawValue): "
                + "\(result.failedRequests) failed of \(result.requests)</text>\n"
            svg += "<rect x=\"\(left)\" y=\"\(panelTop)\" width=\"\(plotWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#999\"/>\n"
            for window in result.reloadWindows where window.count == 2 {
                let start = x(window[0])
                svg +=
                    "<rect x=\(format(start)) y=\"\(panelTop)\" width=\(format(max(x(window[1]) - start, 0.6))) "
                    + "height=\"\(panelHeight)\" fill=\"#dde6f3\"/>\n"
            }
            for (label, microseconds) in [("0.1 ms", 100), ("1 ms", 1000), ("10 ms", 10_000), ("100 ms", 100_000), ("1 s", 1_000_000)] {
                let level = y(UInt64(microseconds))
                svg += "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\(format(level)) y2=\(format(level)) stroke=\"#eee\"/>"
                svg += "<text x=\"\(left - 6)\" y=\(format(level + 4)) text-anchor=\"end\">\(label)</text>\n"
            }
            let points = result.timeline.filter { $0.requests > $0.failures }
                .map { "\(format(x($0.at + 0.05), quoted: false)),\(format(y($0.p99), quoted: false))" }
            svg += "<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1\" points=\"\(points.joined(separator: " "))\"/>\n"
            for slice in result.timeline where slice.failures > 0 {
                let barHeight = min(panelHeight, 8 + Double(slice.failures) * 4)
                svg +=
                    "<rect x=\(format(x(slice.at))) y=\(format(panelTop + panelHeight - barHeight)) "
                    + "width=\(format(max(plotWidth / duration / 10, 1.5))) height=\(format(barHeight)) fill=\"#d62728\"/>\n"
            }
        }
        let axis = top + Double(report.scenarios.count) * (panelHeight + gap) + 4
        for second in stride(from: 0.0, through: duration, by: max(1, (duration / 10).rounded())) {
            svg += "<text x=\(format(x(second))) y=\(format(axis)) text-anchor=\"middle\">\(Int(second)) s</text>\n"
        }
        return svg + "</svg>\n"
    }

    private static func format(_ value: Double, quoted: Bool = true) -> String {
        let text = String(format: "%.1f", value)
        return quoted ? "\"\(text)\"" : text
    }
}
