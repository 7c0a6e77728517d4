/// A snapshot of a named profile (heap, goroutine, ...) in pprof's terms,
/// before encoding: what delta profiles subtract and what both the protobuf
/// and the text formats are written from.
struct ProfileData: Sendable {
    struct Key: Hashable, Sendable {
        /// Leaf first, adjusted for symbolization (see `ProfileBuilder.add`).
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
            return a.key.addresses.lexicographicallyPrecedes(b.key.addresses)
        }
    }

    func builder() -> ProfileBuilder {
        var b = ProfileBuilder(sampleTypes: sampleTypes, periodType: periodType, period: period)
        b.timeNanos = timeNanos
        b.durationNanos = durationNanos
        b.defaultSampleType = defaultSampleType
        b.comments = comments
        for sample in sortedSamples() {
            b.add(addresses: sample.key.addresses, values: sample.values, labels: sample.key.labels)
        }
        return b
    }
}
