import Foundation
import Testing
@testable import Pprof

/// Two fake images with a few named addresses, for deterministic encoder tests.
struct FakeSymbols: SymbolSource {
    func executableMappings() -> [ExecutableMapping] {
        [ExecutableMapping(start: 0x400000, limit: 0x500000, fileOffset: 0, path: "/app/server", buildID: "abcd"),
         ExecutableMapping(start: 0x7f0000000000, limit: 0x7f0000100000, fileOffset: 0x1000, path: "/lib/libc.so.6", buildID: "")]
    }
    func frames(at address: UInt64) -> [SymbolizedFrame] {
        switch address {
        case 0x401000: return [SymbolizedFrame(function: "App.leaf() -> ()", systemName: "$s3App4leafyyF", file: "/src/a.swift", line: 10, entry: 0x400ff0)]
        case 0x402000:
            // An inlined helper inside App.outer.
            return [SymbolizedFrame(function: "App.inlined()", systemName: "$s3App7inlinedyyF", file: "/src/a.swift", line: 20, entry: 0),
                    SymbolizedFrame(function: "App.outer()", systemName: "$s3App5outeryyF", file: "/src/a.swift", line: 30, entry: 0x401ff0)]
        default: return []
        }
    }
}

@Suite("Profile encoding: symbolized into locations and functions, written as profile.proto")
struct ProfileEncodingTests {
    func sampleProfile() -> ProfileData {
        var b = ProfileData(sampleTypes: [ValueType(type: "samples", unit: "count"), ValueType(type: "cpu", unit: "nanoseconds")],
                            periodType: ValueType(type: "cpu", unit: "nanoseconds"), period: 10_000_000)
        b.timeNanos = 1_700_000_000_000_000_000
        b.durationNanos = 3_000_000_000
        b.add(.init(addresses: [0x401000, 0x402000]), [3, 30_000_000])
        b.add(.init(addresses: [0x7f0000000100, 0x402000]), [1, 10_000_000])
        b.add(.init(addresses: [0x401000, 0x402000]), [2, 20_000_000]) // merges with the first
        b.comments = ["hello"]
        return b
    }

    @Test("encodes header fields, merges identical stacks and keeps ids dense and in order")
    func structure() throws {
        let p = try DecodedProfile(bytes: sampleProfile().encoded(symbols: FakeSymbols()))
        #expect(p.strings.first == "")
        #expect(p.sampleTypes.count == 2)
        #expect(p.string(p.sampleTypes[1].type) == "cpu")
        #expect(p.period == 10_000_000 && p.timeNanos == 1_700_000_000_000_000_000 && p.durationNanos == 3_000_000_000)
        #expect(p.samples.count == 2)
        #expect(p.samples[0].values == [5, 50_000_000])
        #expect(p.mappings.map(\.id) == [1, 2])
        #expect(p.locations.map(\.id) == [1, 2, 3])
        #expect(p.functions.map(\.id) == [1, 2, 3])
        #expect(p.comments.map { p.string($0) } == ["hello"])
    }

    @Test("locations carry real addresses, inlined frames first, and their mapping")
    func locations() throws {
        let p = try DecodedProfile(bytes: sampleProfile().encoded(symbols: FakeSymbols()))
        let outer = try #require(p.locations.first { $0.address == 0x402000 })
        #expect(outer.mappingID == 1)
        #expect(outer.lines.map { p.string(p.functions[Int($0.functionID) - 1].name) } == ["App.inlined()", "App.outer()"])
        #expect(outer.lines.map(\.line) == [20, 30])
        let libc = try #require(p.locations.first { $0.address == 0x7f0000000100 })
        #expect(libc.mappingID == 2 && libc.lines.isEmpty)
        let fn = try #require(p.functions.first { p.string($0.name) == "App.leaf() -> ()" })
        #expect(p.string(fn.systemName) == "$s3App4leafyyF")
        #expect(p.string(fn.filename) == "/src/a.swift")
    }

    @Test("has_functions where we named locations of the mapping, even if not all of them")
    func mappingFlags() throws {
        var b = sampleProfile()
        b.add(.init(addresses: [0x4fff00]), [1, 10_000_000]) // in /app/server, but nameless
        let p = try DecodedProfile(bytes: b.encoded(symbols: FakeSymbols()))
        // pprof must not re-symbolize /app/server: it would replace our names.
        #expect(p.mappings[0].hasFunctions)
        // Files and lines are claimed only where every location has them.
        #expect(!p.mappings[0].hasFilenames && !p.mappings[0].hasLineNumbers)
        #expect(!p.mappings[1].hasFunctions && !p.mappings[1].hasFilenames)
        #expect(p.string(p.mappings[0].filename) == "/app/server" && p.string(p.mappings[0].buildID) == "abcd")
        #expect(p.mappings[1].offset == 0x1000)
    }

    @Test("labels and negative values survive the round trip")
    func labelsAndNegatives() throws {
        var b = ProfileData(sampleTypes: [ValueType(type: "inuse_space", unit: "bytes")],
                            periodType: ValueType(type: "space", unit: "bytes"), period: 524288)
        b.add(.init(addresses: [0x401000], labels: [SampleLabel(key: "bytes", number: 64)]), [-128])
        b.defaultSampleType = "inuse_space"
        let p = try DecodedProfile(bytes: b.encoded(symbols: FakeSymbols()))
        #expect(p.samples[0].values == [-128])
        #expect(p.string(p.samples[0].labels[0].key) == "bytes" && p.samples[0].labels[0].num == 64)
        #expect(p.string(p.defaultSampleType) == "inuse_space")
    }

    @Test("an empty profile still has a string table and is non-empty once gzipped")
    func emptyProfile() throws {
        let b = ProfileData(sampleTypes: [ValueType(type: "goroutine", unit: "count")],
                            periodType: ValueType(type: "goroutine", unit: "count"), period: 1)
        let bytes = b.encoded(symbols: FakeSymbols())
        let p = try DecodedProfile(bytes: bytes)
        #expect(p.strings.first == "" && p.samples.isEmpty)
        #expect(try Gzip.decompress(Gzip.compress(bytes)) == bytes)
    }

    @Test("the same samples give the same bytes, whatever order they were added in (labels included)")
    func deterministic() {
        let stacks: [(ProfileData.Key, [Int64])] = [
            (.init(addresses: [0x401000, 0x402000], labels: [SampleLabel(key: "thread", string: "a")]), [1, 10]),
            (.init(addresses: [0x401000, 0x402000], labels: [SampleLabel(key: "thread", string: "b")]), [1, 10]),
            (.init(addresses: [0x7f0000000100]), [2, 10]),
            (.init(addresses: [0x402000]), [5, 50]),
        ]
        var encodings = Set<[UInt8]>()
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            var b = ProfileData(sampleTypes: [ValueType(type: "samples", unit: "count"), ValueType(type: "cpu", unit: "nanoseconds")],
                                periodType: ValueType(type: "cpu", unit: "nanoseconds"), period: 10)
            for i in order { b.add(stacks[i].0, stacks[i].1) }
            encodings.insert(b.encoded(symbols: FakeSymbols()))
        }
        #expect(encodings.count == 1)
    }

    @Test("go tool pprof accepts the encoded profile and shows our names")
    func goToolReadsIt() throws {
        let path = try GoPprof.temporaryFile(try sampleProfile().gzipped(symbols: FakeSymbols()), name: "encoded.pb.gz")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let out = try GoPprof.run(["-traces", "-symbolize=none", path])
        let traces = GoPprof.parseTraces(out)
        #expect(traces.count == 2)
        #expect(traces.contains { $0.functions == ["App.leaf() -> ()", "App.inlined() (inline)", "App.outer()"] && $0.value == "50ms" }, "\(out)")
    }
}

@Suite("Delta arithmetic")
struct ProfileDataTests {
    @Test("subtracting keeps changed stacks, drops unchanged ones, allows negatives")
    func subtracting() {
        var a = ProfileData(sampleTypes: [ValueType(type: "x", unit: "count")], periodType: ValueType(type: "x", unit: "count"), period: 1)
        var b = a
        a.timeNanos = 1_000
        b.timeNanos = 5_000
        a.add(.init(addresses: [1]), [5]); b.add(.init(addresses: [1]), [5])
        a.add(.init(addresses: [2]), [7]); b.add(.init(addresses: [2]), [4])
        b.add(.init(addresses: [3]), [2])
        a.add(.init(addresses: [4]), [1])
        let d = b.subtracting(a)
        #expect(d.samples[.init(addresses: [1])] == nil)
        #expect(d.samples[.init(addresses: [2])] == [-3])
        #expect(d.samples[.init(addresses: [3])] == [2])
        #expect(d.samples[.init(addresses: [4])] == [-1])
        #expect(d.durationNanos == 4_000)
    }
}
