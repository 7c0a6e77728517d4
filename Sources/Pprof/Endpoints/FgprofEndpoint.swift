/// `/debug/fgprof?seconds=N&format=pprof|folded`: a wall-clock profile of
/// every thread, as felixge/fgprof serves it for Go (Grafana Alloy's
/// `profile.fgprof` target): where threads spend their time, on a CPU or
/// waiting. See `WallProfiler`.
enum FgprofEndpoint {
    static let path = "/debug/fgprof"

    static func handle(_ request: HTTPRequest, settings: EndpointSettings, symbols: some SymbolSource,
                       isCancelled: () -> Bool) -> HTTPResponse {
        var seconds: Int64 = 30
        if let raw = request.queryValue("seconds"), !raw.isEmpty {
            guard let s = parseGoInt64(raw), s > 0 else {
                return .pprofError(400, "invalid value for \"seconds\" - must be a positive integer")
            }
            seconds = s
        }
        if seconds > settings.maxProfileSeconds {
            return .pprofError(400, "profile duration exceeds the server's maximum of \(settings.maxProfileSeconds) seconds")
        }
        let format = request.queryValue("format") ?? ""
        guard format == "" || format == "pprof" || format == "folded" else {
            return .pprofError(400, "unknown format \"\(format)\": use pprof or folded")
        }
        let (data, _) = WallProfiler.profile(seconds: seconds, isCancelled: isCancelled)
        if format == "folded" {
            return .text(FoldedStacks.render(data, valueIndex: 0, symbols: symbols))
        }
        do {
            return .profile(filename: "fgprof", try data.builder().gzipped(symbols: symbols))
        } catch {
            return .pprofError(500, "failed to encode profile")
        }
    }
}

/// Brendan Gregg's collapsed stacks: one `root;caller;...;leaf count` line per
/// distinct stack, inlined functions expanded, as fgprof's `format=folded`
/// writes them. Samples that differ only in labels are merged.
enum FoldedStacks {
    static func render(_ data: ProfileData, valueIndex: Int, symbols: some SymbolSource) -> String {
        let resolved = symbols.frames(at: Array(Set(data.samples.keys.flatMap(\.addresses))))
        var totals: [String: Int64] = [:]
        for (key, values) in data.samples where valueIndex < values.count {
            var names: [String] = []
            for address in key.addresses.reversed() {
                let frames = resolved[address] ?? []
                if frames.isEmpty { names.append("0x" + String(address, radix: 16)); continue }
                // Innermost (inlined) frame first: root first here.
                for frame in frames.reversed() { names.append(sanitized(frame.function)) }
            }
            // A thread on a CPU whose stack could not be taken (see WallProfiler).
            if names.isEmpty { names = ["[stack not captured]"] }
            let line = names.joined(separator: ";")
            totals[line, default: 0] += values[valueIndex]
        }
        return totals.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined()
    }

    /// `;` separates frames and the last space the count: neither may appear in a name.
    private static func sanitized(_ name: String) -> String {
        String(name.map { $0 == ";" ? ":" : ($0 == "\n" ? " " : $0) })
    }
}
