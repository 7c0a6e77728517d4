import Glibc
import Testing

@testable import Pprof

/// `/symbol` takes any address from any client: its cache must stay small
/// and one request's CPU bounded (issue 11, item 6).
@Suite("/symbol limits")
struct SymbolEndpointLimitTests {
    /// `count` distinct addresses spread over the main executable's code.
    private func codeAddresses(_ count: Int, symbolizer: Symbolizer) throws -> [UInt64] {
        let text = try #require(symbolizer.executableMappings().first)
        let stride = max(1, (text.limit - text.start) / UInt64(count))
        return (0..<UInt64(count)).map { text.start + $0 * stride }.filter { $0 < text.limit }
    }

    @Test("the per-address cache stays within its byte bound however many addresses are asked")
    func cacheIsBoundedInBytes() throws {
        let symbolizer = Symbolizer()
        let addresses = try codeAddresses(60_000, symbolizer: symbolizer)
        var named = 0
        for batch in stride(from: 0, to: addresses.count, by: 4096) {
            let table = symbolizer.frames(at: Array(addresses[batch..<min(batch + 4096, addresses.count)]))
            named += table.values.filter { !$0.isEmpty }.count
            #expect(symbolizer.cacheUsage.bytes <= Symbolizer.maxCachedBytes)
        }
        #expect(named > 10_000, "real code addresses: \(named) named")
        // The bound was reached (so it was exercised), and entries are still cached.
        #expect(symbolizer.cacheUsage.addresses > 0)
        let usage = symbolizer.cacheUsage
        print("symbol cache after \(addresses.count) addresses: \(usage.addresses) entries, \(usage.bytes) bytes")
    }

    @Test("a /symbol request stops looking up when its CPU budget is spent; every word answered, in order")
    func requestCPUIsBounded() throws {
        let symbolizer = Symbolizer()
        let addresses = try codeAddresses(20_000, symbolizer: symbolizer)
        let body = Array(addresses.map { "0x" + String($0, radix: 16) }.joined(separator: "+").utf8)
        let request = HTTPRequest(method: "POST", target: "/debug/pprof/symbol", body: body)
        // A budget spent at once: one batch, then stop.
        let starved = SymbolEndpoint.handle(request, symbols: symbolizer, cpuBudgetNanoseconds: 1)
        let starvedLines = String(decoding: starved.body, as: UTF8.self).split(separator: "\n").count - 1
        #expect(starved.status == 200)
        #expect(starvedLines > 0 && starvedLines <= SymbolEndpoint.batchSize, "\(starvedLines) answered")
        // A budget large enough: every named address, and a repeated one again, as Go does.
        let twice = HTTPRequest(method: "POST", target: "/debug/pprof/symbol", body: body + Array("+".utf8) + body)
        let full = SymbolEndpoint.handle(twice, symbols: symbolizer, cpuBudgetNanoseconds: 600_000_000_000)
        let lines = Array(String(decoding: full.body, as: UTF8.self).split(separator: "\n").dropFirst())
        #expect(lines.count > 2 * SymbolEndpoint.batchSize && lines.count % 2 == 0)
        #expect(lines[..<(lines.count / 2)] == lines[(lines.count / 2)...])
    }
}
