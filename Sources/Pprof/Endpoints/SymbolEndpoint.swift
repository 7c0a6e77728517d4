/// `/debug/pprof/symbol`: program counters to function names, from the raw
/// query (GET) or the body (POST), `+`-separated; pprof's remote symbolizer.
enum SymbolEndpoint {
    static func handle(_ request: HTTPRequest, symbols: some SymbolSource) -> HTTPResponse {
        let input = request.method == "POST" ? String(decoding: request.body, as: UTF8.self) : request.rawQuery
        var out = "num_symbols: 1\n"
        for word in input.split(separator: "+") {
            let trimmed = word.trimmingWhitespace()
            guard let pc = parseGoUInt64(trimmed), pc != 0 else { continue }
            guard let frame = symbols.frames(at: pc).last else { continue }
            out += "0x\(String(pc, radix: 16)) \(frame.function)\n"
        }
        return .text(out)
    }

    /// strconv.ParseUint(s, 0, 64): 0x/0o/0b prefixes, a leading 0 for octal.
    static func parseGoUInt64(_ s: Substring) -> UInt64? {
        let lower = s.lowercased()
        let digits = String(lower.filter { $0 != "_" })
        if digits.hasPrefix("0x") { return UInt64(digits.dropFirst(2), radix: 16) }
        if digits.hasPrefix("0o") { return UInt64(digits.dropFirst(2), radix: 8) }
        if digits.hasPrefix("0b") { return UInt64(digits.dropFirst(2), radix: 2) }
        if digits.count > 1 && digits.hasPrefix("0") { return UInt64(digits.dropFirst(), radix: 8) }
        return UInt64(digits, radix: 10)
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return s
    }
}
