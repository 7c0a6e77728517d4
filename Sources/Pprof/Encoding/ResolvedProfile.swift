/// A `ProfileData` in the shape of profile.proto, ready to be written: its
/// addresses symbolized, deduplicated into locations and functions with ids
/// 1...N in first-use order (the order Parca insists on), each location
/// attributed to its mapping, and each mapping's flags set from what was
/// named in it. Building it is the one step that asks a `SymbolSource`;
/// `ProfileEncoder` only writes what it holds. (Go's runtime/pprof keeps
/// the same split between its profile builder and its encoder.)
struct ResolvedProfile {
    struct Sample {
        var locationIDs: [UInt64]
        var values: [Int64]
        var labels: [SampleLabel]
    }

    struct Mapping {
        var id: UInt64
        var mapping: ExecutableMapping
        /// Some location in it was named. pprof then does not symbolize it
        /// again: its own attempt (llvm-symbolizer, addr2line, Go's objfile)
        /// would replace our demangled Swift names with worse ones for the
        /// whole mapping, and cannot name what our symbol tables could not.
        var hasFunctions: Bool
        /// Every location in it has a file, and a line: claimed only then.
        var hasFilenames: Bool
        var hasLineNumbers: Bool
    }

    struct Location {
        var id: UInt64
        var mappingID: UInt64
        var address: UInt64
        /// Innermost inlined call first, the physical function last.
        var lines: [(functionID: UInt64, line: Int64)]
    }

    struct Function: Hashable {
        var name: String
        var systemName: String
        var file: String
    }

    var sampleTypes: [ValueType]
    var periodType: ValueType
    var period: Int64
    var timeNanos: Int64
    var durationNanos: Int64
    var defaultSampleType: String?
    var comments: [String]
    var samples: [Sample] = []
    var mappings: [Mapping] = []
    var locations: [Location] = []
    /// Function `i` has id `i + 1`.
    var functions: [Function] = []

    /// Symbolizes `data`'s addresses through `symbols` (one batch) and
    /// lays them out; samples in `ProfileData.sortedSamples()` order, so
    /// the same data always gives the same profile.
    init(_ data: ProfileData, symbols: some SymbolSource) {
        sampleTypes = data.sampleTypes
        periodType = data.periodType
        period = data.period
        timeNanos = data.timeNanos
        durationNanos = data.durationNanos
        defaultSampleType = data.defaultSampleType
        comments = data.comments
        let sorted = data.sortedSamples()

        // One location per distinct address, in first-use order.
        var locationIDs: [UInt64: UInt64] = [:]
        var addresses: [UInt64] = []
        for sample in sorted {
            for address in sample.key.addresses where locationIDs[address] == nil {
                addresses.append(address)
                locationIDs[address] = UInt64(addresses.count)
            }
        }
        samples = sorted.map { sample in
            Sample(locationIDs: sample.key.addresses.map { locationIDs[$0] ?? 0 }, values: sample.values,
                   labels: sample.key.labels)
        }

        let executable = symbols.executableMappings()
        var anyNamed = [Bool](repeating: false, count: executable.count)
        var allFiled = [Bool](repeating: true, count: executable.count)
        var allLined = [Bool](repeating: true, count: executable.count)
        var used = [Bool](repeating: false, count: executable.count)
        var functionIDs: [Function: UInt64] = [:]
        let symbolized = symbols.frames(at: addresses)
        for (index, address) in addresses.enumerated() {
            let mappingIndex = executable.firstIndex { $0.start <= address && address < $0.limit }
            let frames = symbolized[address] ?? []
            var lines: [(functionID: UInt64, line: Int64)] = []
            for frame in frames {
                let function = Function(name: frame.function, systemName: frame.systemName, file: frame.file)
                let id: UInt64
                if let known = functionIDs[function] {
                    id = known
                } else {
                    functions.append(function)
                    id = UInt64(functions.count)
                    functionIDs[function] = id
                }
                lines.append((id, Int64(frame.line)))
            }
            if let m = mappingIndex {
                used[m] = true
                if !frames.isEmpty { anyNamed[m] = true }
                if frames.isEmpty || frames.contains(where: { $0.file.isEmpty }) { allFiled[m] = false }
                if frames.isEmpty || frames.contains(where: { $0.line == 0 }) { allLined[m] = false }
            }
            locations.append(Location(id: UInt64(index + 1), mappingID: mappingIndex.map { UInt64($0 + 1) } ?? 0,
                                      address: address, lines: lines))
        }
        // Every executable mapping is listed (pprof attributes addresses by
        // them), flags only where this profile's locations earn them.
        mappings = executable.enumerated().map { i, mapping in
            let named = used[i] && anyNamed[i]
            return Mapping(id: UInt64(i + 1), mapping: mapping, hasFunctions: named,
                           hasFilenames: named && allFiled[i], hasLineNumbers: named && allLined[i])
        }
    }
}
