/// A symbol source for writing one profile: every address it will ask for is
/// looked up at once (one acquisition of `Symbolizer`'s lock instead of one
/// per address); any other address is passed on.
struct PrefetchedSymbols<Source: SymbolSource>: SymbolSource {
    let source: Source
    let table: [UInt64: [SymbolizedFrame]]

    init(_ source: Source, addresses: [UInt64]) {
        self.source = source
        self.table = source.frames(at: addresses)
    }

    func executableMappings() -> [ExecutableMapping] { source.executableMappings() }

    func frames(at address: UInt64) -> [SymbolizedFrame] { table[address] ?? source.frames(at: address) }
}
