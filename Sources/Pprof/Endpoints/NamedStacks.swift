/// A profile's samples as stacks of named frames, root first, with the
/// values of one sample type: what the folded and JSON formats are written
/// from (`FoldedStacks`, `ProfileJSON`).
struct NamedStacks {
    /// One function at one place. A physical frame with inlined calls gives
    /// several, the physical function first.
    struct Frame: Hashable {
        var name: String
        var file: String
        var line: Int
    }

    var sampleType: ValueType
    var sampleTypes: [ValueType]
    var comments: [String]
    /// Distinct frames; stacks refer to them by index.
    var frames: [Frame] = []
    /// Root first; stacks that name the same frames are summed; zero values dropped.
    var stacks: [(frames: [Int], value: Int64)] = []

    /// Why a `sample_index` was refused.
    struct InvalidSampleIndex: Error {
        var message: String
    }

    /// - Parameter sampleIndex: a sample type's name or position, as in
    ///   `go tool pprof -sample_index`; nil for the profile's default (its
    ///   `default_sample_type`, else the last type, as pprof chooses).
    init(_ profile: ProfileData, symbols: some SymbolSource, sampleIndex: String?) throws(InvalidSampleIndex) {
        let types = profile.sampleTypes
        let index = try Self.index(of: sampleIndex, in: types, default: profile.defaultSampleType)
        sampleType = types[index]
        sampleTypes = types
        comments = profile.comments
        let samples = profile.sortedSamples().map { (addresses: $0.key.addresses, values: $0.values) }
        let symbols = PrefetchedSymbols(symbols, addresses: samples.flatMap(\.addresses))
        var frameIndex: [Frame: Int] = [:]
        var stackIndex: [[Int]: Int] = [:]
        for sample in samples {
            let value = sample.values[index]
            guard value != 0 else { continue }
            var stack: [Int] = []
            for address in sample.addresses.reversed() {
                var named = symbols.frames(at: address).reversed().map { Frame(name: $0.function, file: $0.file, line: $0.line) }
                if named.isEmpty { named = [Frame(name: "0x" + String(address, radix: 16), file: "", line: 0)] }
                for frame in named { stack.append(position(of: frame, in: &frameIndex)) }
            }
            // A sample without a stack (a wall-clock sample of a thread whose
            // stack could not be taken) still needs a frame to be drawn.
            if stack.isEmpty { stack = [position(of: Frame(name: "[stack not captured]", file: "", line: 0), in: &frameIndex)] }
            if let known = stackIndex[stack] {
                stacks[known].value &+= value
            } else {
                stackIndex[stack] = stacks.count
                stacks.append((stack, value))
            }
        }
    }

    /// The frame's position in `frames`, added if new.
    private mutating func position(of frame: Frame, in known: inout [Frame: Int]) -> Int {
        if let i = known[frame] { return i }
        known[frame] = frames.count
        frames.append(frame)
        return frames.count - 1
    }

    var total: Int64 { stacks.reduce(0) { $0 &+ $1.value } }

    private static func index(of requested: String?, in types: [ValueType],
                              default defaultType: String?) throws(InvalidSampleIndex) -> Int {
        guard let requested, !requested.isEmpty else {
            if let defaultType, let i = types.firstIndex(where: { $0.type == defaultType }) { return i }
            return types.count - 1
        }
        if let i = Int(requested), types.indices.contains(i) { return i }
        if let i = types.firstIndex(where: { $0.type == requested }) { return i }
        let names = types.map(\.type).joined(separator: ", ")
        throw InvalidSampleIndex(message: "sample_index=\(requested) is not one of this profile's sample types: \(names) (or 0...\(types.count - 1))")
    }
}
