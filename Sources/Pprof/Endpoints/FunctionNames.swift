import Synchronization

/// Which names the endpoints give functions: short ones by default (see
/// `ShortName`), the full demangled ones when the configuration or the
/// request (`names=full`) asks. The mangled symbol stays in `systemName`.
struct FunctionNames<Base: SymbolSource>: SymbolSource {
    let base: Base
    let full: Bool

    func executableMappings() -> [ExecutableMapping] { base.executableMappings() }

    func frames(at address: UInt64) -> [SymbolizedFrame] {
        full ? base.frames(at: address) : ShortNameCache.shared.shortened(base.frames(at: address))
    }

    func frames(at addresses: [UInt64]) -> [UInt64: [SymbolizedFrame]] {
        let table = base.frames(at: addresses)
        return full ? table : table.mapValues(ShortNameCache.shared.shortened)
    }
}

extension FunctionNames {
    /// Full names if the settings say so, or the request's `names` is `full`
    /// (`short` asks for short ones whatever the settings).
    init(_ base: Base, settings: EndpointSettings, request: HTTPRequest) {
        switch request.queryValue("names") {
        case "full": self.init(base: base, full: true)
        case "short": self.init(base: base, full: false)
        default: self.init(base: base, full: settings.fullFunctionNames)
        }
    }
}

/// Short names computed once per full name for the process's life (a
/// process has a bounded set of functions; the table is dropped if it ever
/// grows past `limit`).
final class ShortNameCache: Sendable {
    static let shared = ShortNameCache()
    static let limit = 100_000

    private let table = Mutex<[String: String]>([:])

    func shortened(_ frames: [SymbolizedFrame]) -> [SymbolizedFrame] {
        frames.map { frame in
            var frame = frame
            frame.function = short(frame.function)
            return frame
        }
    }

    func short(_ full: String) -> String {
        if let known = table.withLock({ $0[full] }) { return known }
        let name = CxxDemangle.demangled(full).map(ShortName.ofCxx) ?? ShortName.of(full)
        table.withLock { table in
            if table.count >= Self.limit { table.removeAll() }
            table[full] = name
        }
        return name
    }
}
