import Glibc

/// `/debug/pprof/profile?seconds=N`: a CPU profile of the whole process.
enum CPUProfileEndpoint {
    static func handle(_ request: HTTPRequest, settings: EndpointSettings, symbols: some SymbolSource,
                       isCancelled: () -> Bool) -> HTTPResponse {
        let seconds = requestedSeconds(request)
        if seconds > settings.maxProfileSeconds {
            return .pprofError(400, "profile duration exceeds the server's maximum of \(settings.maxProfileSeconds) seconds")
        }
        if let refusal = ProfileTextFormats.invalidFormat(request) { return refusal }
        let profile: CPUProfile
        do {
            profile = try CPUProfiler.shared.profile(seconds: seconds, hz: settings.cpuSamplingRate, isCancelled: isCancelled)
        } catch {
            guard case .startFailed(let code) = error else { return .pprofError(500, "Could not enable CPU profiling") }
            switch code {
            case EBUSY: return .pprofError(500, "Could not enable CPU profiling: cpu profiling already in use")
            case EEXIST: return .pprofError(500, "Could not enable CPU profiling: another SIGPROF handler replaced the profiler's")
            case EMFILE, ENFILE, ENOMEM, EAGAIN:
                // Resources that may free up: say which, and that a retry may work.
                return .pprofError(503, "Could not enable CPU profiling: \(SocketIO.errorText(code))")
            default: return .pprofError(500, "Could not enable CPU profiling: \(SocketIO.errorText(code))")
            }
        }
        if let text = ProfileTextFormats.response(request, profile: profile.profileData(), symbols: symbols) {
            return text
        }
        do {
            return .profile(filename: "profile", try profile.profileData().gzipped(symbols: symbols))
        } catch {
            return .pprofError(500, "failed to encode profile")
        }
    }

    /// Go's rule: a missing, unparseable or non-positive `seconds` silently means 30.
    static func requestedSeconds(_ request: HTTPRequest) -> Int64 {
        if let raw = request.queryValue("seconds"), let s = parseGoInt64(raw), s > 0 { return s }
        return 30
    }
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let cpuProfileEndpointUnit: @convention(c) () -> Int = { 8 }
}
