/// A sample or period type of a profile, such as `cpu/nanoseconds`.
struct ValueType: Sendable, Hashable {
    var type: String
    var unit: String
}

/// A label on a sample: a string value, or a number with an optional unit.
struct SampleLabel: Sendable, Hashable {
    var key: String
    var string: String? = nil
    var number: Int64? = nil
    var numberUnit: String? = nil
}

/// Where the builder gets mappings and names from; `Symbolizer` in production,
/// a fake in tests.
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

/// Builds a `perftools.profiles.Profile` from stacks of program counters:
/// interns strings, deduplicates locations and functions, attributes
/// locations to mappings, and writes ids 1...N in emission order (the order
/// Parca insists on). Collection happens elsewhere; encoding happens here.
struct ProfileBuilder {
    var sampleTypes: [ValueType]
    var periodType: ValueType
    var period: Int64
    var timeNanos: Int64 = 0
    var durationNanos: Int64 = 0
    var defaultSampleType: String? = nil
    var comments: [String] = []

    private struct SampleKey: Hashable {
        var addresses: [UInt64]
        var labels: [SampleLabel]
    }
    private var sampleIndex: [SampleKey: Int] = [:]
    private var samples: [(key: SampleKey, values: [Int64])] = []

    init(sampleTypes: [ValueType], periodType: ValueType, period: Int64) {
        self.sampleTypes = sampleTypes
        self.periodType = periodType
        self.period = period
    }

    /// Adds a sample. `addresses` are leaf first and already adjusted for
    /// symbolization: the exact PC for an interrupted leaf, return address
    /// minus one for callers. Identical stacks and labels are summed.
    mutating func add(addresses: [UInt64], values: [Int64], labels: [SampleLabel] = []) {
        precondition(values.count == sampleTypes.count, "a sample needs one value per sample type")
        let key = SampleKey(addresses: addresses, labels: labels)
        if let i = sampleIndex[key] {
            for j in values.indices { samples[i].values[j] &+= values[j] }
        } else {
            sampleIndex[key] = samples.count
            samples.append((key, values))
        }
    }

    var sampleCount: Int { samples.count }

    /// The samples as added (identical ones summed), for the text formats.
    var stacks: [(addresses: [UInt64], values: [Int64])] {
        samples.map { (addresses: $0.key.addresses, values: $0.values) }
    }

    /// Serializes the profile (uncompressed protobuf).
    func encode(symbols: some SymbolSource) -> [UInt8] {
        var strings = StringTable()
        let mappings = symbols.executableMappings()

        // Locations, in first-use order, one per distinct address.
        var locationIDs: [UInt64: UInt64] = [:]
        var locationOrder: [UInt64] = []
        for sample in samples {
            for address in sample.key.addresses where locationIDs[address] == nil {
                locationOrder.append(address)
                locationIDs[address] = UInt64(locationOrder.count)
            }
        }

        var functionIDs: [FunctionKey: UInt64] = [:]
        var functionOrder: [FunctionKey] = []
        var locations: [EncodedLocation] = []
        // Per mapping: were all its locations symbolized, with files and lines?
        var anyNamed = [Bool](repeating: false, count: mappings.count)
        var allFiled = [Bool](repeating: true, count: mappings.count)
        var allLined = [Bool](repeating: true, count: mappings.count)
        var used = [Bool](repeating: false, count: mappings.count)

        let symbolized = symbols.frames(at: locationOrder)
        for address in locationOrder {
            let mappingIndex = Self.mappingIndex(of: address, in: mappings)
            let frames = symbolized[address] ?? []
            var lines: [(UInt64, Int64)] = []
            for frame in frames {
                let key = FunctionKey(name: frame.function, systemName: frame.systemName, file: frame.file)
                let id: UInt64
                if let existing = functionIDs[key] {
                    id = existing
                } else {
                    functionOrder.append(key)
                    id = UInt64(functionOrder.count)
                    functionIDs[key] = id
                }
                lines.append((id, Int64(frame.line)))
            }
            if let m = mappingIndex {
                used[m] = true
                if !frames.isEmpty { anyNamed[m] = true }
                if frames.isEmpty || frames.contains(where: { $0.file.isEmpty }) { allFiled[m] = false }
                if frames.isEmpty || frames.contains(where: { $0.line == 0 }) { allLined[m] = false }
            }
            locations.append(EncodedLocation(address: address, mappingID: mappingIndex.map { UInt64($0 + 1) } ?? 0, lines: lines))
        }

        var w = ProtobufWriter()
        for t in sampleTypes {
            let type = strings.index(t.type), unit = strings.index(t.unit)
            w.message(1) { $0.int64(1, type); $0.int64(2, unit) }
        }
        for sample in samples {
            let ids = sample.key.addresses.map { locationIDs[$0]! }
            let labels = sample.key.labels.map { label in
                (key: strings.index(label.key),
                 str: label.string.map { strings.index($0) } ?? 0,
                 num: label.number ?? 0,
                 unit: label.numberUnit.map { strings.index($0) } ?? 0)
            }
            w.message(2) { s in
                s.packed(1, ids)
                s.packed(2, sample.values.map { UInt64(bitPattern: $0) })
                for l in labels {
                    s.message(3) { $0.int64(1, l.key); $0.int64(2, l.str); $0.int64(3, l.num); $0.int64(4, l.unit) }
                }
            }
        }
        for (i, m) in mappings.enumerated() {
            let file = strings.index(m.path), build = strings.index(m.buildID)
            // has_functions tells pprof not to symbolize this mapping again.
            // Set as soon as we named anything in it: pprof's own attempt
            // (llvm-symbolizer, addr2line, Go's objfile) would replace our
            // demangled Swift names with worse ones for the whole mapping,
            // and cannot name what our symbol tables could not.
            let named = used[i] && anyNamed[i]
            w.message(3) { p in
                p.uint64(1, UInt64(i + 1))
                p.uint64(2, m.start)
                p.uint64(3, m.limit)
                p.uint64(4, m.fileOffset)
                p.int64(5, file)
                p.int64(6, build)
                p.bool(7, named)
                p.bool(8, named && allFiled[i])
                p.bool(9, named && allLined[i])
            }
        }
        for (i, loc) in locations.enumerated() {
            w.message(4) { p in
                p.uint64(1, UInt64(i + 1))
                p.uint64(2, loc.mappingID)
                p.uint64(3, loc.address)
                for line in loc.lines {
                    p.message(4) { $0.uint64(1, line.function); $0.int64(2, line.line) }
                }
            }
        }
        for (i, f) in functionOrder.enumerated() {
            let name = strings.index(f.name), system = strings.index(f.systemName), file = strings.index(f.file)
            w.message(5) { p in
                p.uint64(1, UInt64(i + 1))
                p.int64(2, name)
                p.int64(3, system)
                p.int64(4, file)
            }
        }
        let periodTypeIndex = (type: strings.index(periodType.type), unit: strings.index(periodType.unit))
        let commentIndexes = comments.map { strings.index($0) }
        let defaultType = defaultSampleType.map { strings.index($0) } ?? 0
        w.int64(9, timeNanos)
        w.int64(10, durationNanos)
        w.message(11) { $0.int64(1, periodTypeIndex.type); $0.int64(2, periodTypeIndex.unit) }
        w.int64(12, period)
        for c in commentIndexes { w.int64(13, c) }
        w.int64(14, defaultType)
        // The string table goes last: every index above is final by now.
        for s in strings.strings { w.string(6, s) }
        return w.bytes
    }

    /// Serializes and gzips the profile, as every pprof endpoint serves it.
    func gzipped(symbols: some SymbolSource) throws -> [UInt8] {
        try Gzip.compress(encode(symbols: symbols))
    }

    private struct FunctionKey: Hashable { var name: String; var systemName: String; var file: String }
    private struct EncodedLocation { var address: UInt64; var mappingID: UInt64; var lines: [(function: UInt64, line: Int64)] }

    private static func mappingIndex(of address: UInt64, in mappings: [ExecutableMapping]) -> Int? {
        mappings.firstIndex { $0.start <= address && address < $0.limit }
    }
}

/// The profile's string table; index 0 is always "".
struct StringTable {
    private(set) var strings: [String] = [""]
    private var indexes: [String: Int64] = ["": 0]

    mutating func index(_ s: String) -> Int64 {
        if let i = indexes[s] { return i }
        let i = Int64(strings.count)
        strings.append(s)
        indexes[s] = i
        return i
    }
}
