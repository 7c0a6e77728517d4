/// `/debug/pprof/<name>` for heap, allocs, goroutine, threadcreate, block and
/// mutex, with Go's `debug`, `gc` and `seconds` (delta) parameters.
enum NamedProfileEndpoint {
    /// Profiles for which Go accepts `seconds`.
    static let supportsDelta: Set<String> = ["allocs", "block", "goroutine", "heap", "mutex", "threadcreate"]

    static func handle(_ request: HTTPRequest, profile: any NamedProfile, settings: EndpointSettings,
                       symbols: some SymbolSource, isCancelled: () -> Bool) -> HTTPResponse {
        if let reason = profile.unavailableReason() {
            return .pprofError(503, "pprof: \(reason)")
        }
        if let seconds = request.queryValue("seconds"), !seconds.isEmpty {
            return delta(request, profile: profile, rawSeconds: seconds, settings: settings, symbols: symbols,
                         isCancelled: isCancelled)
        }
        if let text = ProfileTextFormats.response(request, profile: profile.collect(), symbols: symbols) {
            return text
        }
        // `gc` is accepted and ignored: Swift frees memory when the last reference goes.
        let debug = goAtoiOrZero(request.queryValue("debug"))
        if debug != 0 {
            return .text(profile.text(debug: debug, symbols: symbols))
        }
        do {
            return .profile(filename: profile.name, try profile.collect().gzipped(symbols: symbols))
        } catch {
            return .pprofError(500, "failed to encode profile")
        }
    }

    private static func delta(_ request: HTTPRequest, profile: any NamedProfile, rawSeconds: String,
                              settings: EndpointSettings, symbols: some SymbolSource,
                              isCancelled: () -> Bool) -> HTTPResponse {
        guard let seconds = parseGoInt64(rawSeconds), seconds > 0 else {
            return .pprofError(400, "invalid value for \"seconds\" - must be a positive integer")
        }
        guard supportsDelta.contains(profile.name) else {
            return .pprofError(400, "\"seconds\" parameter is not supported for this profile type")
        }
        if seconds > settings.maxProfileSeconds {
            return .pprofError(400, "profile duration exceeds the server's maximum of \(settings.maxProfileSeconds) seconds")
        }
        if goAtoiOrZero(request.queryValue("debug")) != 0 {
            return .pprofError(400, "seconds and debug params are incompatible")
        }
        if let refusal = ProfileTextFormats.invalidFormat(request) { return refusal }
        let before = profile.collect()
        let deadline = Clock.monotonicNanoseconds() + seconds * 1_000_000_000
        while true {
            let now = Clock.monotonicNanoseconds()
            if now >= deadline { break }
            if isCancelled() { return .pprofError(500, "context canceled") }
            Clock.sleep(nanoseconds: min(deadline - now, 100_000_000))
        }
        let after = profile.collect()
        if let text = ProfileTextFormats.response(request, profile: after.subtracting(before), symbols: symbols) {
            return text
        }
        do {
            // Go writes deltas with gzip's default level.
            let bytes = try Gzip.compress(after.subtracting(before).encoded(symbols: symbols), level: 6)
            return .profile(filename: "\(profile.name)-delta", bytes)
        } catch {
            return .pprofError(500, "failed to compute delta")
        }
    }
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let namedProfileEndpointUnit: @convention(c) () -> Int = { 6 }
}
