/// `/debug/pprof/symbol`: program counters to function names, from the raw
/// query (GET) or the body (POST), `+`-separated; pprof's remote symbolizer.
///
/// A request may use at most `cpuBudgetNanoseconds` of CPU (a 1 MiB body
/// holds some 70,000 addresses, seconds of work): addresses are looked up in
/// batches, and those left when the budget is spent are not answered, which
/// pprof reads as "unknown". Each distinct address is looked up once; every
/// word is answered, in order, as Go does.
enum SymbolEndpoint {
    static let cpuBudgetNanoseconds: Int64 = 500_000_000
    static let batchSize = 2048

    static func handle(_ request: HTTPRequest, symbols: some SymbolSource,
                       cpuBudgetNanoseconds: Int64 = cpuBudgetNanoseconds) -> HTTPResponse {
        let input = request.method == "POST" ? String(decoding: request.body, as: UTF8.self) : request.rawQuery
        let words = input.split(separator: "+").compactMap { word -> UInt64? in
            guard let pc = parseGoUInt64(word.trimmingWhitespace()), pc != 0 else { return nil }
            return pc
        }
        var seen = Set<UInt64>()
        let distinct = words.filter { seen.insert($0).inserted }
        // At least one batch, then as many as the budget allows.
        let deadline = Clock.threadCPUNanoseconds() + cpuBudgetNanoseconds
        var names: [UInt64: String] = [:]
        var start = 0
        repeat {
            let batch = Array(distinct[start..<min(start + batchSize, distinct.count)])
            for (pc, frames) in symbols.frames(at: batch) {
                if let frame = frames.last { names[pc] = frame.function }
            }
            start += batch.count
        } while start < distinct.count && Clock.threadCPUNanoseconds() < deadline
        var out = "num_symbols: 1\n"
        for pc in words {
            guard let name = names[pc] else { continue }
            out += "0x\(String(pc, radix: 16)) \(name)\n"
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
