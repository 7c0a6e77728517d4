/// Writes a `ResolvedProfile` as a `perftools.profiles.Profile` message
/// (uncompressed protobuf), field by field as profile.proto names them
/// (`ProfileFields.swift`). Nothing here symbolizes, deduplicates or
/// decides: the same `ResolvedProfile` always gives the same bytes.
enum ProfileEncoder {
    static func encode(_ profile: ResolvedProfile) -> [UInt8] {
        var strings = StringTable()
        var w = ProtobufWriter()
        for t in profile.sampleTypes {
            let type = strings.index(t.type), unit = strings.index(t.unit)
            w.message(ProfileField.sampleType) {
                $0.int64(ValueTypeField.type, type)
                $0.int64(ValueTypeField.unit, unit)
            }
        }
        for sample in profile.samples {
            let labels = sample.labels.map { label in
                (key: strings.index(label.key),
                 str: label.string.map { strings.index($0) } ?? 0,
                 num: label.number ?? 0,
                 unit: label.numberUnit.map { strings.index($0) } ?? 0)
            }
            w.message(ProfileField.sample) { s in
                s.packed(SampleField.locationID, sample.locationIDs)
                s.packed(SampleField.value, sample.values.map { UInt64(bitPattern: $0) })
                for l in labels {
                    s.message(SampleField.label) {
                        $0.int64(LabelField.key, l.key)
                        $0.int64(LabelField.str, l.str)
                        $0.int64(LabelField.num, l.num)
                        $0.int64(LabelField.numUnit, l.unit)
                    }
                }
            }
        }
        for m in profile.mappings {
            let file = strings.index(m.mapping.path), build = strings.index(m.mapping.buildID)
            w.message(ProfileField.mapping) { p in
                p.uint64(MappingField.id, m.id)
                p.uint64(MappingField.memoryStart, m.mapping.start)
                p.uint64(MappingField.memoryLimit, m.mapping.limit)
                p.uint64(MappingField.fileOffset, m.mapping.fileOffset)
                p.int64(MappingField.filename, file)
                p.int64(MappingField.buildID, build)
                p.bool(MappingField.hasFunctions, m.hasFunctions)
                p.bool(MappingField.hasFilenames, m.hasFilenames)
                p.bool(MappingField.hasLineNumbers, m.hasLineNumbers)
            }
        }
        for location in profile.locations {
            w.message(ProfileField.location) { p in
                p.uint64(LocationField.id, location.id)
                p.uint64(LocationField.mappingID, location.mappingID)
                p.uint64(LocationField.address, location.address)
                for line in location.lines {
                    p.message(LocationField.line) {
                        $0.uint64(LineField.functionID, line.functionID)
                        $0.int64(LineField.line, line.line)
                    }
                }
            }
        }
        for (i, f) in profile.functions.enumerated() {
            let name = strings.index(f.name), system = strings.index(f.systemName), file = strings.index(f.file)
            w.message(ProfileField.function) { p in
                p.uint64(FunctionField.id, UInt64(i + 1))
                p.int64(FunctionField.name, name)
                p.int64(FunctionField.systemName, system)
                p.int64(FunctionField.filename, file)
            }
        }
        let periodType = (type: strings.index(profile.periodType.type), unit: strings.index(profile.periodType.unit))
        let comments = profile.comments.map { strings.index($0) }
        let defaultType = profile.defaultSampleType.map { strings.index($0) } ?? 0
        w.int64(ProfileField.timeNanos, profile.timeNanos)
        w.int64(ProfileField.durationNanos, profile.durationNanos)
        w.message(ProfileField.periodType) {
            $0.int64(ValueTypeField.type, periodType.type)
            $0.int64(ValueTypeField.unit, periodType.unit)
        }
        w.int64(ProfileField.period, profile.period)
        for c in comments { w.int64(ProfileField.comment, c) }
        w.int64(ProfileField.defaultSampleType, defaultType)
        // The string table goes last: every index above is final by now.
        for s in strings.strings { w.string(ProfileField.stringTable, s) }
        return w.bytes
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

extension ProfileData {
    /// Symbolized through `symbols` and encoded (uncompressed protobuf).
    func encoded(symbols: some SymbolSource) -> [UInt8] {
        ProfileEncoder.encode(ResolvedProfile(self, symbols: symbols))
    }

    /// Symbolized, encoded and gzipped, as every pprof endpoint serves it.
    func gzipped(symbols: some SymbolSource) throws -> [UInt8] {
        try Gzip.compress(encoded(symbols: symbols))
    }
}
