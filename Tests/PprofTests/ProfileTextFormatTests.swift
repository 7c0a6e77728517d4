import Foundation
import Testing
@testable import Pprof

/// Sums of each sample type in `go tool pprof -raw` output (its Samples
/// section: one line of values, then `:` and location ids, per sample).
func goPprofRawTotals(_ output: String) -> [Int64] {
    var totals: [Int64] = []
    var inSamples = false
    for line in output.split(separator: "\n") {
        if line.hasPrefix("Samples:") { inSamples = true; continue }
        if line.hasPrefix("Locations") { break }
        guard inSamples, let colon = line.firstIndex(of: ":") else { continue }
        let values = line[..<colon].split(separator: " ").compactMap { Int64($0) }
        guard !values.isEmpty, values.count == line[..<colon].split(separator: " ").count else { continue }
        if totals.isEmpty { totals = Array(repeating: 0, count: values.count) }
        for (i, v) in values.enumerated() where i < totals.count { totals[i] += v }
    }
    return totals
}

/// Parses folded stacks line by line: `frame;frame;… value`.
func parseFolded(_ text: String) throws -> [(frames: [String], value: Int64)] {
    struct Malformed: Error, CustomStringConvertible { var description: String }
    return try text.split(separator: "\n").map { line in
        guard let space = line.lastIndex(of: " "), let value = Int64(line[line.index(after: space)...]) else {
            throw Malformed(description: "no value: \(line)")
        }
        let frames = line[..<space].split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard !frames.contains(where: \.isEmpty) else { throw Malformed(description: "empty frame: \(line)") }
        return (frames, value)
    }
}

/// Thread dumps signal every thread: in the process-wide serialized suite.
extension ProcessWideStateTests {
    /// `?format=folded` and `?format=json`, and the names every format shows.
    @Suite("Folded and JSON profiles, short names", .serialized)
    struct ProfileTextFormatTests {
        let server: PprofServer
        var port: Int { server.port! }

        init() throws {
            server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        }

        func get(_ target: String, headers: [String] = []) throws -> StrictResponse {
            try TestHTTP.request(port: port, target: target, headers: headers)
        }

        @Test("folded from the same data as the pprof form: every line parses, and the totals are equal per sample type")
        func foldedTotalsMatchPprof() throws {
            defer { server.stop() }
            let goroutines = GoroutineProfile().collect()
            let file = try GoPprof.temporaryFile(goroutines.gzipped(symbols: Symbolizer.shared), name: "goroutine")
            defer { unlink(file) }
            let raw = goPprofRawTotals(try GoPprof.run(["-raw", file]))
            #expect(raw.count == 1 && raw[0] > 0, "no goroutine samples decoded")
            let folded = try parseFolded(ProfileTextFormats.folded(
                NamedStacks(goroutines, symbols: FunctionNames(base: Symbolizer.shared, full: false), sampleIndex: nil)))
            #expect(folded.reduce(0) { $0 + $1.value } == raw.first)
            #expect(folded.allSatisfy { $0.frames.count >= 1 })

            // Several sample types: each sample_index totals its own column.
            var heapLike = ProfileData(sampleTypes: [ValueType(type: "objects", unit: "count"), ValueType(type: "space", unit: "bytes")],
                                       periodType: ValueType(type: "space", unit: "bytes"), period: 1)
            let stack = GoroutineProfile().collect().samples.keys.first { !$0.addresses.isEmpty }?.addresses ?? []
            heapLike.add(.init(addresses: stack), [3, 300])
            heapLike.add(.init(addresses: Array(stack.dropFirst())), [2, 4096])
            let builder = heapLike
            let heapFile = try GoPprof.temporaryFile(builder.gzipped(symbols: Symbolizer.shared), name: "heaplike")
            defer { unlink(heapFile) }
            let heapRaw = goPprofRawTotals(try GoPprof.run(["-raw", heapFile]))
            #expect(heapRaw == [5, 4396])
            for (index, name) in [(0, "objects"), (1, "space")] {
                for selector in [String(index), name] {
                    let lines = try parseFolded(ProfileTextFormats.folded(NamedStacks(builder, symbols: Symbolizer.shared, sampleIndex: selector)))
                    #expect(lines.reduce(0) { $0 + $1.value } == heapRaw[index], "sample_index=\(selector)")
                }
            }
            // The default is the last type, as pprof's.
            let defaultLines = try parseFolded(ProfileTextFormats.folded(NamedStacks(builder, symbols: Symbolizer.shared, sampleIndex: nil)))
            #expect(defaultLines.reduce(0) { $0 + $1.value } == 4396)
        }

        @Test("format=folded and format=json over HTTP on goroutine, heap and allocs")
        func overHTTP() throws {
            defer { server.stop() }
            for name in ["goroutine", "heap", "allocs"] {
                let folded = try get("/debug/pprof/\(name)?format=folded")
                #expect(folded.status == 200, "\(name)")
                #expect(folded.header("Content-Type") == "text/plain; charset=utf-8")
                let lines = try parseFolded(folded.text)
                if name == "goroutine" { #expect(!lines.isEmpty) }
                let json = try get("/debug/pprof/\(name)?format=json&sample_index=0")
                #expect(json.status == 200 && json.header("Content-Type") == "application/json")
                let object = try #require(try JSONSerialization.jsonObject(with: Data(json.body)) as? [String: Any])
                let frames = try #require(object["frames"] as? [[String: Any]])
                let stacks = try #require(object["stacks"] as? [[String: Any]])
                let total = stacks.reduce(0) { $0 + (($1["value"] as? Int) ?? 0) }
                #expect(object["total"] as? Int == total)
                for stack in stacks {
                    let indexes = try #require(stack["frames"] as? [Int])
                    #expect(indexes.allSatisfy { frames.indices.contains($0) })
                }
            }
            let goroutine = try parseFolded(try get("/debug/pprof/goroutine?format=folded").text)
            // This test's own thread is in the dump, under its short name.
            #expect(goroutine.contains { $0.frames.contains { $0.contains("ProfileTextFormatTests.overHTTP()") } },
                    "\(goroutine.map { $0.frames.joined(separator: ";") }.joined(separator: "\n").prefix(3000))")
        }

        @Test("an unknown format or sample_index is a clear 400")
        func refusals() throws {
            defer { server.stop() }
            let format = try get("/debug/pprof/goroutine?format=svg")
            #expect(format.status == 400 && format.text.contains("unknown format"))
            let profile = try get("/debug/pprof/profile?seconds=1&format=svg")
            #expect(profile.status == 400, "refused before the profile runs")
            let index = try get("/debug/pprof/heap?format=folded&sample_index=bogus")
            #expect(index.status == 400 && index.text.contains("inuse_space"))
        }

        @Test("go tool pprof -top shows short names, -raw the mangled system names; names=full gives the full ones")
        func namesThroughGoPprof() throws {
            defer { server.stop() }
            let url = "http://127.0.0.1:\(port)/debug/pprof/goroutine"
            let top = try GoPprof.run(["-top", "-nodecount=500", url])
            let swiftNames = top.split(separator: "\n").filter { $0.contains("Pprof.") || $0.contains("PprofTests.") }
            #expect(!swiftNames.isEmpty, "\(top)")
            for line in swiftNames {
                #expect(!line.contains(" -> ") && !line.contains(": Swift."), "a type in a short name: \(line)")
            }
            #expect(top.contains("ProfileTextFormatTests.namesThroughGoPprof()"), "\(top)")
            let raw = try GoPprof.run(["-raw", url])
            #expect(raw.contains("ProfileTextFormatTests.namesThroughGoPprof() ") && raw.contains("s=0($s"),
                    "system names keep the mangled symbols:\n\(raw.prefix(3000))")
            let full = try GoPprof.run(["-top", "-nodecount=500", url + "?names=full"])
            #expect(full.contains("ProfileTextFormatTests.namesThroughGoPprof() throws -> ()"), "\(full)")
        }

        @Test("debug=1 text, /symbol and folded all use the short names")
        func sameNamesEverywhere() throws {
            defer { server.stop() }
            let text = try get("/debug/pprof/goroutine?debug=1").text
            #expect(text.contains("ProcessWideStateTests.ProfileTextFormatTests.sameNamesEverywhere()+0x"), "\(text.prefix(3000))")
            #expect(!text.contains("sameNamesEverywhere() throws -> ()"))
            let fullText = try get("/debug/pprof/goroutine?debug=1&names=full").text
            #expect(fullText.contains("sameNamesEverywhere() throws -> ()"))
            let address = try #require(GoroutineProfile().collect().samples.keys.flatMap(\.addresses).first { address in
                Symbolizer.shared.frames(at: address).last?.function.contains(" -> ") == true
            })
            let symbol = try get("/debug/pprof/symbol?0x\(String(address, radix: 16))").text
            let full = try #require(Symbolizer.shared.frames(at: address).last?.function)
            #expect(symbol.contains(" " + ShortName.of(full) + "\n"), "\(symbol) vs \(full)")
        }
    }
}
