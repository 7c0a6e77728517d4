/// Settings the endpoints need, taken from the public configuration.
struct EndpointSettings: Sendable {
    /// CPU samples per CPU-second per thread (Go: 100).
    var cpuSamplingRate: Int = 100
    /// Longest `seconds` a CPU or delta profile may ask for.
    var maxProfileSeconds: Int64 = 300
    /// Full demangled function names instead of short ones (`names=full` per request).
    var fullFunctionNames = false
}

/// Routes a request to the pprof endpoint that answers it, the way Go's
/// net/http/pprof (with Go 1.23+'s ServeMux method rules) does. Independent of
/// the HTTP server, so any router can serve the same endpoints.
struct PprofEndpoints: Sendable {
    static let prefix = "/debug/pprof/"

    var settings: EndpointSettings
    var symbols: Symbolizer
    var profiles: [any NamedProfile]

    init(settings: EndpointSettings, symbols: Symbolizer = .shared, profiles: [any NamedProfile]? = nil) {
        self.settings = settings
        self.symbols = symbols
        self.profiles = profiles ?? Self.defaultProfiles
        // Heap samples are taken from process start: let them see async callers as early as possible.
        AsyncStacks.prepare(symbols: symbols)
    }

    static var defaultProfiles: [any NamedProfile] {
        [HeapProfile.heap, HeapProfile.allocs, GoroutineProfile(), ThreadCreateProfile(),
         ContentionProfile.block, ContentionProfile.mutex]
    }

    /// `isCancelled` tells a long request (a CPU profile) that its client left.
    /// A request that reads profiles or symbols runs only when the memory it
    /// may need is there (`MemoryHeadroom`); else it gets 503.
    func handle(_ request: HTTPRequest, isCancelled: @escaping () -> Bool = { false }) -> HTTPResponse {
        if Self.lightPaths.contains(request.path) { return route(request, isCancelled: isCancelled) }
        return MemoryHeadroom.withReservation(MemoryHeadroom.requestBytes) { route(request, isCancelled: isCancelled) }
            ?? Self.outOfMemory()
    }

    /// Pages that allocate little (fixed text): answered without the memory check.
    static let lightPaths: Set<String> = [prefix + FlameGraphPage.name, prefix + "cmdline"]

    /// The answer when the memory a request may need is not there.
    static func outOfMemory() -> HTTPResponse {
        var response = HTTPResponse.pprofError(503, "pprof: not enough memory for this request now (the process is near its address-space limit); try again later")
        response.headers.append(("Retry-After", "5"))
        return response
    }

    private func route(_ request: HTTPRequest, isCancelled: @escaping () -> Bool) -> HTTPResponse {
        let path = request.path
        if path == FgprofEndpoint.path {
            guard request.method == "GET" || request.method == "HEAD" else { return .methodNotAllowed(allow: "GET, HEAD") }
            return FgprofEndpoint.handle(request, settings: settings, symbols: symbols, isCancelled: isCancelled)
        }
        if path == "/debug/pprof" {
            return .movedPermanently(to: Self.prefix)
        }
        guard path.hasPrefix(Self.prefix) else { return .notFound }
        let name = String(path.dropFirst(Self.prefix.count))

        let isRead = request.method == "GET" || request.method == "HEAD"
        let symbols = FunctionNames(symbols, settings: settings, request: request)
        if name == "symbol" {
            guard isRead || request.method == "POST" else { return .methodNotAllowed(allow: "GET, HEAD, POST") }
            return SymbolEndpoint.handle(request, symbols: symbols)
        }
        guard isRead else { return .methodNotAllowed(allow: "GET, HEAD") }

        switch name {
        case "":
            return .html(IndexPage.render(indexEntries()))
        case FlameGraphPage.name:
            return FlameGraphPage.response()
        case "cmdline":
            return .text(CommandLineEndpoint.arguments())
        case "profile":
            return CPUProfileEndpoint.handle(request, settings: settings, symbols: symbols, isCancelled: isCancelled)
        default:
            guard let profile = profiles.first(where: { $0.name == name }) else {
                return .pprofError(404, "Unknown profile")
            }
            return NamedProfileEndpoint.handle(request, profile: profile, settings: settings, symbols: symbols,
                                               isCancelled: isCancelled)
        }
    }

    private func indexEntries() -> [IndexPage.Entry] {
        var entries = profiles.map { IndexPage.Entry(name: $0.name, count: $0.count(), description: $0.description) }
        entries.append(.init(name: "cmdline", count: 0, description: "The command line invocation of the current program"))
        entries.append(.init(name: "profile", count: 0, description: "CPU profile. You can specify the duration in the seconds GET parameter. After you get the profile file, use the go tool pprof command to investigate the profile."))
        entries.append(.init(name: FlameGraphPage.name, count: 0, description: "Flame graph and top functions of any profile above, in the browser (no Go toolchain needed). Add format=folded (collapsed stacks) or format=json to a profile's URL for other tools."))
        entries.append(.init(name: "symbol", count: 0, description: "Maps given program counters to function names. Counters can be specified in a GET raw query or POST body, multiple counters are separated by '+'."))
        return entries
    }
}

/// Parses an integer the way Go's strconv.ParseInt(s, 10, 64) does: optional
/// sign, decimal digits only, no overflow.
func parseGoInt64(_ s: String) -> Int64? {
    var chars = Substring(s)
    var negative = false
    if chars.first == "+" || chars.first == "-" {
        negative = chars.first == "-"
        chars = chars.dropFirst()
    }
    guard !chars.isEmpty, chars.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    guard let magnitude = UInt64(chars) else { return nil }
    if negative {
        return magnitude <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- magnitude) : nil
    }
    return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
}

/// Go's `strconv.Atoi` with the error ignored, as pprof parses `debug` and `gc`.
func goAtoiOrZero(_ s: String?) -> Int {
    guard let s, let v = parseGoInt64(s), let i = Int(exactly: v) else { return 0 }
    return i
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let pprofEndpointsUnit: @convention(c) () -> Int = { 5 }
}
