/// A profile served at `/debug/pprof/<name>`, like Go's `pprof.Lookup(name)`.
protocol NamedProfile: Sendable {
    var name: String { get }
    /// The index page's description.
    var description: String { get }
    /// The index page's count (records, threads...).
    func count() -> Int
    /// A snapshot for `debug=0` and for delta profiles.
    func collect() -> ProfileData
    /// Go's legacy text format for `debug=1` (and `debug=2` where it differs).
    func text(debug: Int, symbols: some SymbolSource) -> String
    /// Why the profile cannot be taken now (answered with 503), or nil: a
    /// profile that could not look is never served as an empty one.
    func unavailableReason() -> String?
}

extension NamedProfile {
    func unavailableReason() -> String? { nil }
}

/// Go's block and mutex profiles: Swift has no runtime hook that measures
/// contention, so they are served empty (valid, with Go's sample types) so
/// that scrapers whose defaults include them (Grafana Alloy) do not fail.
struct ContentionProfile: NamedProfile {
    let name: String
    let description: String

    static let block = ContentionProfile(
        name: "block", description: "Stack traces that led to blocking on synchronization primitives")
    static let mutex = ContentionProfile(
        name: "mutex", description: "Stack traces of holders of contended mutexes")

    func count() -> Int { 0 }

    func collect() -> ProfileData {
        var data = ProfileData(
            sampleTypes: [ValueType(type: "contentions", unit: "count"), ValueType(type: "delay", unit: "nanoseconds")],
            periodType: ValueType(type: "contentions", unit: "count"),
            period: 1)
        data.timeNanos = Clock.wallNanoseconds()
        data.comments = ["swift-pprof: \(name) profiling is not supported; this profile is always empty"]
        return data
    }

    func text(debug: Int, symbols: some SymbolSource) -> String {
        name == "mutex" ? "--- mutex:\ncycles/second=1000000000\nsampling period=0\n" : "--- contention:\ncycles/second=1000000000\n"
    }
}
