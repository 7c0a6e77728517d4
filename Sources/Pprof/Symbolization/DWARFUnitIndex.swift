/// Which compile unit of an image covers an address: built from the unit
/// headers and unit DIEs only (their DW_AT_ranges, or DW_AT_low_pc and
/// DW_AT_high_pc), so that a unit's line program and inlined calls are read
/// when an address first lands in it (`UnitDebugInfo`), not all at once.
///
/// What the unit DIEs do not place, a unit with a line program but no
/// address attributes and a line program no unit refers to, is "unplaced":
/// read with the image's first lookup, since any address may be theirs.
///
/// Without .debug_info to read (a system library's separate debug file,
/// read for lines only), each line program is a unit of its own, placed by
/// where its sequences lie (`SequenceBounds`: the programs run once
/// without building rows).
struct DWARFUnitIndex {
    enum Kind {
        /// "Units" are .debug_info's compile and partial units.
        case units
        /// "Units" are .debug_line's programs.
        case programs
    }
    /// Addresses claimed by one unit; consecutive ranges of a unit are merged.
    struct Entry {
        var start: UInt64
        var end: UInt64
        var unit: UInt32
    }

    let kind: Kind
    /// Where each compile or partial unit starts in .debug_info (each
    /// program in .debug_line, for `.programs`), ascending; a unit is named
    /// by its position here.
    private(set) var unitOffsets: [Int] = []
    /// Sorted by start.
    private var entries: [Entry] = []
    /// maxEnd[i]: the largest end of entries[0...i], to find ranges that
    /// start early and reach far (a unit without function sections).
    private var maxEnd: [UInt64] = []
    /// Units with a line program and no address attributes.
    private(set) var unplacedUnits: [UInt32] = []
    /// Line programs (their offsets in .debug_line) no unit refers to.
    private(set) var orphanPrograms: [Int] = []

    /// Scans every unit of `sections`. Ranges that do not start in the
    /// image's code (`isCode`: functions the linker discarded) are left out,
    /// as the tables leave them out.
    init(info: DWARFInfoSections, line: DWARFLineSections, isCode: (UInt64) -> Bool) {
        kind = .units
        var abbreviationCache: [UInt64: DWARFAbbreviationTable] = [:]
        var claimed: [Entry] = []
        var referencedPrograms = Set<Int>()
        var offset = 0
        while let (found, end) = DWARFUnit.unit(at: offset, in: info, abbreviationCache: &abbreviationCache,
                                                topDIEOnly: true) {
            defer { offset = end }
            guard let unit = found else { continue }
            let id = UInt32(unitOffsets.count)
            unitOffsets.append(unit.offset)
            let program = unit.stmtList.flatMap { $0 < UInt64(Int.max) ? Int($0) : nil }
            if let program { referencedPrograms.insert(program) }
            guard let ranges = unit.addressRanges(info) else {
                if program != nil { unplacedUnits.append(id) }
                continue
            }
            for range in ranges where isCode(range.lowerBound) {
                claimed.append(Entry(start: range.lowerBound, end: range.upperBound, unit: id))
            }
        }
        place(claimed)
        var cursor = DWARFCursor(line.line)
        while !cursor.isAtEnd {
            let start = cursor.offset
            guard let (length, _) = try? cursor.initialLength(), length <= UInt64(cursor.remaining) else { break }
            if !referencedPrograms.contains(start) { orphanPrograms.append(start) }
            cursor.offset += Int(length)
        }
        unitOffsets = compacted(unitOffsets)
    }

    /// Indexes the programs of `line` by their sequences' addresses.
    init(programsIn line: DWARFLineSections, isCode: (UInt64) -> Bool) {
        kind = .programs
        var bounds = SequenceBounds()
        var offset = 0
        while offset < line.line.count {
            bounds.program = UInt32(unitOffsets.count)
            guard let end = LineTable.readProgram(at: offset, sections: line, compilationDirectory: [],
                                                  keepSequence: isCode, into: &bounds) else { break }
            unitOffsets.append(offset)
            offset = end
        }
        place(bounds.claimed)
        unitOffsets = compacted(unitOffsets)
    }

    private mutating func place(_ unsorted: [Entry]) {
        let claimed = unsorted.sorted { $0.start != $1.start ? $0.start < $1.start : $0.unit < $1.unit }
        for entry in claimed {
            // Consecutive ranges of one unit become one, across the padding
            // between its functions: no other unit's range starts in between,
            // and one reaching over from before is found through `maxEnd`.
            if let last = entries.last, last.unit == entry.unit {
                entries[entries.count - 1].end = max(last.end, entry.end)
            } else {
                entries.append(entry)
            }
        }
        entries = compacted(entries)
        var reach: UInt64 = 0
        maxEnd = entries.map { entry in
            reach = max(reach, entry.end)
            return reach
        }
    }

    /// The units claiming `address`, usually one.
    func units(containing address: UInt64) -> [UInt32] {
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].start <= address { low = middle + 1 } else { high = middle }
        }
        var found: [UInt32] = []
        var index = low - 1
        while index >= 0, maxEnd[index] > address {
            if entries[index].end > address && !found.contains(entries[index].unit) { found.append(entries[index].unit) }
            index -= 1
        }
        return found
    }

    /// Where the unit holding .debug_info offset `offset` starts, if any
    /// unit starts at or before it.
    func unitOffset(before offset: Int) -> Int? {
        var low = 0, high = unitOffsets.count
        while low < high {
            let middle = (low + high) / 2
            if unitOffsets[middle] <= offset { low = middle + 1 } else { high = middle }
        }
        return low > 0 ? unitOffsets[low - 1] : nil
    }

    var memoryBytes: Int {
        unitOffsets.capacity * 8 + entries.capacity * MemoryLayout<Entry>.stride + maxEnd.capacity * 8
            + unplacedUnits.capacity * 4 + orphanPrograms.capacity * 8
    }
}

/// Where a line program's sequences lie, without its rows: the lowest row
/// address of each sequence to its end, as `LineTableBuilder` would keep them.
struct SequenceBounds: LineRowSink {
    static var wantsPaths: Bool { false }

    /// The program being run (its number in the index).
    var program: UInt32 = 0
    private(set) var claimed: [DWARFUnitIndex.Entry] = []
    private var unitStart = 0
    private var low: UInt64?

    mutating func beginUnit() {
        unitStart = claimed.count
        low = nil
    }

    mutating func commitUnit() { low = nil }

    mutating func abandonUnit() {
        claimed.removeSubrange(unitStart...)
        low = nil
    }

    mutating func path(_ bytes: [UInt8]) -> UInt32 { 0 }

    mutating func appendRow(address: UInt64, file: UInt32, line: UInt32) {
        low = min(low ?? address, address)
    }

    mutating func endSequence(at end: UInt64, keep: (UInt64) -> Bool) {
        if let low, low < end, keep(low) { claimed.append(DWARFUnitIndex.Entry(start: low, end: end, unit: program)) }
        low = nil
    }
}
