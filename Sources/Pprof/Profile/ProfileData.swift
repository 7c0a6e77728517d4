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

/// A profile in pprof's terms, collected but not yet symbolized: the one
/// model every profile becomes (CPU, wall clock, heap, goroutine, ...),
/// what delta profiles subtract, and what both the protobuf
/// (`ResolvedProfile`, then `ProfileEncoder`) and the text formats
/// (`NamedStacks`) are written from. Collectors keep their own running
/// state (`CPUProfile`, `ThreadStates`) and hand over one of these.
struct ProfileData: Sendable {
    struct Key: Hashable, Sendable {
        /// Leaf first, adjusted for symbolization: the exact PC for an
        /// interrupted leaf, return address minus one for callers.
        var addresses: [UInt64]
        var labels: [SampleLabel] = []
    }

    var sampleTypes: [ValueType]
    var periodType: ValueType
    var period: Int64
    var defaultSampleType: String? = nil
    var timeNanos: Int64 = 0
    var durationNanos: Int64 = 0
    var comments: [String] = []
    /// Values per distinct stack and label set, one per sample type.
    var samples: [Key: [Int64]] = [:]

    mutating func add(_ key: Key, _ values: [Int64]) {
        if let old = samples[key] {
            samples[key] = zip(old, values).map { $0 &+ $1 }
        } else {
            samples[key] = values
        }
    }

    /// `self - earlier`, as Go's delta profiles: stacks whose difference is
    /// all zero disappear; in-use values may become negative.
    func subtracting(_ earlier: ProfileData) -> ProfileData {
        var delta = self
        delta.samples = [:]
        for (key, values) in samples {
            let before = earlier.samples[key] ?? Array(repeating: 0, count: values.count)
            let d = zip(values, before).map { $0 &- $1 }
            if d.contains(where: { $0 != 0 }) { delta.samples[key] = d }
        }
        for (key, before) in earlier.samples where samples[key] == nil {
            let d = before.map { 0 &- $0 }
            if d.contains(where: { $0 != 0 }) { delta.samples[key] = d }
        }
        delta.durationNanos = timeNanos - earlier.timeNanos
        return delta
    }

    /// Samples in a stable order: largest first by the last value type, as
    /// Go's text formats list them, then by stack.
    func sortedSamples() -> [(key: Key, values: [Int64])] {
        samples.map { (key: $0.key, values: $0.value) }.sorted { a, b in
            let va = a.values.last ?? 0, vb = b.values.last ?? 0
            if va != vb { return va > vb }
            if a.key.addresses != b.key.addresses { return a.key.addresses.lexicographicallyPrecedes(b.key.addresses) }
            // Same stack, other labels (a thread name, an allocation size):
            // ordered too, so that the same data always encodes the same bytes.
            return a.key.labels.map(\.sortKey).lexicographicallyPrecedes(b.key.labels.map(\.sortKey))
        }
    }
}

extension SampleLabel {
    fileprivate var sortKey: String { "\(key)\u{0}\(string ?? "")\u{0}\(number.map(String.init) ?? "")\u{0}\(numberUnit ?? "")" }
}
