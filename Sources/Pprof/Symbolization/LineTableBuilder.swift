/// Where a line-number program's rows go (`LineRowSink`), and the sink
/// that builds a `LineTable`: rows per sequence, sequences sorted into one
/// table at the end, a malformed unit rolled back.

/// What a line-number program's rows go to: a table, or (`SequenceBounds`)
/// only where its sequences lie.
protocol LineRowSink {
    /// Whether rows need their file's path-table index (else file 0).
    static var wantsPaths: Bool { get }
    mutating func beginUnit()
    mutating func commitUnit()
    mutating func abandonUnit()
    mutating func path(_ bytes: [UInt8]) -> UInt32
    mutating func appendRow(address: UInt64, file: UInt32, line: UInt32)
    mutating func endSequence(at end: UInt64, keep: (UInt64) -> Bool)
}

/// Collects the rows of all sequences, then sorts the sequences into one table.
struct LineTableBuilder: LineRowSink {
    static var wantsPaths: Bool { true }

    struct Sequence {
        var start: UInt64
        var end: UInt64
        var rows: Range<Int>
    }

    var addresses: [UInt64] = []
    var files: [UInt32] = []
    var lines: [UInt32] = []
    var sequences: [Sequence] = []
    var paths = InternedPaths()

    // Rollback points for a unit that turns out malformed.
    private var unitRows = 0, unitSequences = 0, unitPaths = 0
    /// Where the rows of the sequence being built start.
    private var sequenceStart = 0
    private var sequenceInOrder = true

    mutating func beginUnit() {
        unitRows = addresses.count
        unitSequences = sequences.count
        unitPaths = paths.count
        sequenceStart = addresses.count
        sequenceInOrder = true
    }

    mutating func commitUnit() {
        // Rows of a sequence left without DW_LNE_end_sequence have no end.
        truncateRows(to: sequenceStart)
    }

    mutating func abandonUnit() {
        truncateRows(to: unitRows)
        sequences.removeSubrange(unitSequences...)
        paths.truncate(to: unitPaths)
        sequenceStart = addresses.count
    }

    private mutating func truncateRows(to count: Int) {
        addresses.removeSubrange(count...)
        files.removeSubrange(count...)
        lines.removeSubrange(count...)
    }

    mutating func path(_ bytes: [UInt8]) -> UInt32 { paths.intern(bytes) }

    /// A row of the current sequence. Of rows at one address the last
    /// counts; a row repeating its predecessor's file and line is merged.
    @inline(__always)
    mutating func appendRow(address: UInt64, file: UInt32, line: UInt32) {
        var count = addresses.count
        if count > sequenceStart {
            let previous = addresses[count - 1]
            if address < previous { sequenceInOrder = false; return }
            if address == previous {
                truncateRows(to: count - 1)
                count -= 1
            }
            if count > sequenceStart && files[count - 1] == file && lines[count - 1] == line { return }
        }
        addresses.append(address)
        files.append(file)
        lines.append(line)
    }

    /// DW_LNE_end_sequence at `end`: keeps the sequence if it is well formed
    /// and wanted, and starts the next one.
    mutating func endSequence(at end: UInt64, keep: (UInt64) -> Bool) {
        // A row at the end address covers nothing.
        while addresses.count > sequenceStart && addresses[addresses.count - 1] >= end {
            truncateRows(to: addresses.count - 1)
        }
        if sequenceInOrder, addresses.count > sequenceStart, keep(addresses[sequenceStart]) {
            sequences.append(Sequence(start: addresses[sequenceStart], end: end,
                                      rows: sequenceStart..<addresses.count))
        } else {
            truncateRows(to: sequenceStart)
        }
        sequenceStart = addresses.count
        sequenceInOrder = true
    }

    /// One sorted table: sequences by start address, each followed by a gap
    /// row at its end unless the next starts right there. Of overlapping
    /// sequences the first (lowest start) wins.
    func finish() -> LineTable {
        let order = sequences.indices.sorted {
            sequences[$0].start != sequences[$1].start ? sequences[$0].start < sequences[$1].start : $0 < $1
        }
        var outAddresses: [UInt64] = [], outFiles: [UInt32] = [], outLines: [UInt32] = []
        let capacity = addresses.count + sequences.count
        outAddresses.reserveCapacity(capacity)
        outFiles.reserveCapacity(capacity)
        outLines.reserveCapacity(capacity)
        var previousEnd: UInt64?
        for index in order {
            let sequence = sequences[index]
            if let end = previousEnd {
                if sequence.start < end { continue }
                if sequence.start == end {
                    outAddresses.removeLast()
                    outFiles.removeLast()
                    outLines.removeLast()
                }
            }
            outAddresses.append(contentsOf: addresses[sequence.rows])
            outFiles.append(contentsOf: files[sequence.rows])
            outLines.append(contentsOf: lines[sequence.rows])
            outAddresses.append(sequence.end)
            outFiles.append(LineTable.gap)
            outLines.append(0)
            previousEnd = sequence.end
        }
        // Paths of rows dropped with their sequences stay; they cost little.
        return LineTable(addresses: outAddresses, files: outFiles, lines: outLines, paths: compacted(paths.paths))
    }
}

/// File paths numbered in order of first appearance, each kept once.
struct InternedPaths {
    private(set) var paths: [String] = []
    private var index: [String: UInt32] = [:]

    var count: Int { paths.count }

    /// The number of `bytes` as a path, added if new.
    mutating func intern(_ bytes: [UInt8]) -> UInt32 {
        let path = String(decoding: bytes, as: UTF8.self)
        if let known = index[path] { return known }
        let number = UInt32(paths.count)
        paths.append(path)
        index[path] = number
        return number
    }

    /// Forgets the paths from number `count` on.
    mutating func truncate(to count: Int) {
        for path in paths[count...] { index[path] = nil }
        paths.removeSubrange(count...)
    }
}
