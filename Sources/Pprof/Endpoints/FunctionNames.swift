import Synchronization

/// Which names the endpoints give functions: short ones by default (see
/// `ShortName`), the full demangled ones when the configuration or the
/// request (`names=full`) asks. The mangled symbol stays in `systemName`.
/// An address no symbol names gets the name of the file it lies in,
/// `[libc.so.6]`, rather than nothing.
struct FunctionNames<Base: SymbolSource>: SymbolSource {
    let base: Base
    let full: Bool
    private let mappings = MappingsOnce()

    init(base: Base, full: Bool) {
        self.base = base
        self.full = full
    }

    func executableMappings() -> [ExecutableMapping] { mappings.get(base) }

    func frames(at address: UInt64) -> [SymbolizedFrame] {
        named(address, base.frames(at: address))
    }

    func frames(at addresses: [UInt64]) -> [UInt64: [SymbolizedFrame]] {
        var table = base.frames(at: addresses)
        for (address, frames) in table { table[address] = named(address, frames) }
        return table
    }

    private func named(_ address: UInt64, _ frames: [SymbolizedFrame]) -> [SymbolizedFrame] {
        guard !frames.isEmpty else {
            guard let mapping = mappings.get(base).first(where: { $0.start <= address && address < $0.limit }),
                  let file = mapping.path.split(separator: "/").last else { return [] }
            return [SymbolizedFrame(function: "[\(file)]", systemName: "", file: "", line: 0, entry: 0)]
        }
        return full ? frames : ShortNameCache.shared.shortened(frames)
    }
}

/// The executable mappings, read once per request (from /proc/self/maps).
private final class MappingsOnce: Sendable {
    private let value = Mutex<[ExecutableMapping]?>(nil)

    func get(_ source: some SymbolSource) -> [ExecutableMapping] {
        if let known = value.withLock({ $0 }) { return known }
        let mappings = source.executableMappings()
        value.withLock { $0 = mappings }
        return mappings
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

    /// `pthread_cond_signal` of `pthread_cond_signal@@GLIBC_2.3.2`: .symtab
    /// names of versioned C symbols carry their version.
    static func unversioned(_ name: String) -> String {
        guard !name.contains(" "), let at = name.firstIndex(of: "@"), at > name.startIndex else { return name }
        return String(name[..<at])
    }

    func short(_ full: String) -> String {
        if let known = table.withLock({ $0[full] }) { return known }
        let name = CxxDemangle.demangled(full).map(ShortName.ofCxx) ?? ShortName.of(Self.unversioned(full))
        table.withLock { table in
            if table.count >= Self.limit { table.removeAll() }
            table[full] = name
        }
        return name
    }
}
