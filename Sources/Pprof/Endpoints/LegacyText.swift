/// Pieces of Go's legacy `debug=1` text formats.
enum LegacyText {
    /// ` 0x…` per frame as Go prints them after `@`: return addresses, so
    /// callers' adjusted addresses get their one back.
    static func addressList(_ addresses: [UInt64], leafIsExact: Bool) -> String {
        addresses.enumerated().map { i, a in
            " 0x" + String(i == 0 && leafIsExact ? a : a &+ 1, radix: 16)
        }.joined()
    }

    /// `#\t0x…\tfunction+0x…\tfile:line` lines for a stack, inlined frames
    /// first; `#\t0x…` alone for an address nothing is known about.
    static func frameComments(_ addresses: [UInt64], symbols: some SymbolSource) -> String {
        var out = ""
        for address in addresses {
            let frames = symbols.frames(at: address)
            if frames.isEmpty {
                out += "#\t0x\(String(address, radix: 16))\n"
                continue
            }
            for frame in frames {
                let offset = frame.entry > 0 && address >= frame.entry ? "+0x" + String(address - frame.entry, radix: 16) : ""
                let place = frame.file.isEmpty ? "" : "\t\(frame.file):\(frame.line)"
                out += "#\t0x\(String(address, radix: 16))\t\(frame.function)\(offset)\(place)\n"
            }
        }
        return out
    }

    /// Go's count-profile text (goroutine, threadcreate): a total, then each
    /// distinct stack with its count, largest first.
    /// - Parameter emptyStacksNote: if set, stacks with no frame are counted in
    ///   one trailing comment with this text instead of Go's `N @` + `#\t0x0`.
    static func countProfile(_ name: String, _ data: ProfileData, leafIsExact: Bool, symbols: some SymbolSource,
                             emptyStacksNote: String? = nil) -> String {
        let symbols = PrefetchedSymbols(symbols, addresses: data.samples.keys.flatMap(\.addresses))
        let total = data.samples.values.reduce(0) { $0 + $1[0] }
        var out = "\(name) profile: total \(total)\n"
        var withoutStack: Int64 = 0
        for sample in data.sortedSamples() {
            if emptyStacksNote != nil && sample.key.addresses.isEmpty {
                withoutStack += sample.values[0]
                continue
            }
            out += "\(sample.values[0]) @" + addressList(sample.key.addresses, leafIsExact: leafIsExact) + "\n"
            // An empty stack prints as Go prints it: a lone zero address.
            out += sample.key.addresses.isEmpty ? "#\t0x0\n" : frameComments(sample.key.addresses, symbols: symbols)
            out += "\n"
        }
        if let note = emptyStacksNote, withoutStack > 0 {
            out += "# \(withoutStack) \(note)\n"
        }
        return out
    }
}
