/// Which compile unit of an image covers an address: built from the unit
/// headers and unit DIEs only (their DW_AT_ranges, or DW_AT_low_pc and
/// DW_AT_high_pc), so that a unit's line program and inlined calls are read
/// when an address first lands in it (`UnitDebugInfo`), not all at once.
///
/// What the unit DIEs do not place, a unit with a line program but no
/// address attributes and a line program no unit refers to, is "unplaced":
/// read with the image's first lookup, since any address may be theirs.
struct DWARFUnitIndex {
    /// Addresses claimed by one unit; adjacent ranges of a unit are merged.
    struct Entry {
        var start: UInt64
        var end: UInt64
        var unit: UInt32
    }

    /// Where each compile or partial unit starts in .debug_info, ascending;
    /// a unit is named by its position here.
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
    init(sections: DWARFSectionSet, isCode: (UInt64) -> Bool) {
        var abbreviationCache: [UInt64: DWARFAbbreviationTable] = [:]
        var claimed: [Entry] = []
        var referencedPrograms = Set<Int>()
        var offset = 0
        while let (found, end) = DWARFUnit.unit(at: offset, in: sections.info, abbreviationCache: &abbreviationCache) {
            defer { offset = end }
            guard let unit = found else { continue }
            let id = UInt32(unitOffsets.count)
            unitOffsets.append(unit.offset)
            let program = unit.stmtList.flatMap { $0 < UInt64(Int.max) ? Int($0) : nil }
            if let program { referencedPrograms.insert(program) }
            guard let ranges = unit.addressRanges(sections.info) else {
                if program != nil { unplacedUnits.append(id) }
                continue
            }
            for range in ranges where isCode(range.lowerBound) {
                claimed.append(Entry(start: range.lowerBound, end: range.upperBound, unit: id))
            }
        }
        claimed.sort { $0.start != $1.start ? $0.start < $1.start : $0.unit < $1.unit }
        for entry in claimed {
            if let last = entries.last, last.unit == entry.unit, entry.start <= last.end {
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
        var cursor = DWARFCursor(sections.line.line)
        while !cursor.isAtEnd {
            let start = cursor.offset
            guard let (length, _) = try? cursor.initialLength(), length <= UInt64(cursor.remaining) else { break }
            if !referencedPrograms.contains(start) { orphanPrograms.append(start) }
            cursor.offset += Int(length)
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
