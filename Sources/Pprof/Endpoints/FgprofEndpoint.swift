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
        // Go's fgprof knows format=pprof (the default) and folded; json is the flame graph page's.
        let format = request.queryValue("format") ?? ""
        if format != "pprof", let refusal = ProfileTextFormats.invalidFormat(request) { return refusal }
        let (data, _) = WallProfiler.profile(seconds: seconds, isCancelled: isCancelled)
        if format != "pprof", let text = ProfileTextFormats.response(request, profile: data, symbols: symbols) {
            return text
        }
        do {
            return .profile(filename: "fgprof", try data.gzipped(symbols: symbols))
        } catch {
            return .pprofError(500, "failed to encode profile")
        }
    }
}
