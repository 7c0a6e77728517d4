/// Where a profile's mappings and names come from: `Symbolizer` in
/// production, a fake in tests.
protocol SymbolSource: Sendable {
    func executableMappings() -> [ExecutableMapping]
    func frames(at address: UInt64) -> [SymbolizedFrame]
    /// Frames for many addresses at once (`Symbolizer` takes its lock once).
    func frames(at addresses: [UInt64]) -> [UInt64: [SymbolizedFrame]]
}

extension SymbolSource {
    func frames(at addresses: [UInt64]) -> [UInt64: [SymbolizedFrame]] {
        var table: [UInt64: [SymbolizedFrame]] = [:]
        for address in addresses where table[address] == nil { table[address] = frames(at: address) }
        return table
    }
}

extension Symbolizer: SymbolSource {}
