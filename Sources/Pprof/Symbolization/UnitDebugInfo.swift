/// The line and inline tables of one image, read per compile unit when an
/// address first lands in it: a first profile runs the line programs and
/// walks the DIEs of the units its stacks touch, not of the whole image
/// (a few of hundreds in the demo), and only those units' tables are kept.
///
/// Lookups give what the whole-image tables (`DebugInfo`) give: each unit's
/// rows and inlined calls are read by the same code, from the same
/// sections. Used when the image's DWARF can be read in place (mapped, not
/// compressed: an inflated copy would have to be kept) and it has
/// .debug_info to place the units; otherwise `ImageDebugInfo.whole`.
struct UnitDebugInfo: Sendable {
    private let sections: DWARFSectionSet
    private let index: DWARFUnitIndex
    private let code: [Range<UInt64>]
    /// Tables read so far, by unit (`DWARFUnitIndex`'s numbering);
    /// `UnitDebugInfo.unplaced` for what the index could not place.
    private var tables: [UInt32: DebugInfo] = [:]

    private static let unplaced = UInt32.max

    /// nil where the tables must be read whole: compressed sections, or no
    /// .debug_info.
    init?(sections: DWARFSectionSet, code: [Range<UInt64>]) {
        guard !sections.ownsInflatedData, sections.info.info.count > 0 else { return nil }
        self.sections = sections
        self.code = code
        index = DWARFUnitIndex(sections: sections, isCode: code.containsAddress)
    }

    /// File and line of an ELF virtual address, and the inlined calls
    /// around it (innermost first), reading the tables it needs.
    mutating func lookup(_ address: UInt64) -> (location: (file: String, line: Int)?, inlines: [InlineTable.Frame]) {
        var candidates = index.units(containing: address)
        candidates.append(Self.unplaced)
        var location: (file: String, line: Int)?
        var inlines: [InlineTable.Frame] = []
        for unit in candidates {
            let info = tables(of: unit)
            if location == nil { location = info.lines.lookup(address) }
            if inlines.isEmpty { inlines = info.inlines.lookup(address) }
        }
        return (location, inlines)
    }

    /// Reads every unit's tables (the read-ahead).
    mutating func readAll() {
        _ = tables(of: Self.unplaced)
        for unit in index.unitOffsets.indices { _ = tables(of: UInt32(unit)) }
    }

    /// How many units' tables (and the unplaced ones) were read so far.
    var unitsRead: Int { tables.count }

    /// Bytes of the tables read so far; the index counts as line tables.
    var memoryBytes: (lines: Int, inlines: Int) {
        tables.values.reduce((index.memoryBytes, 0)) { total, info in
            (total.0 + info.lines.memoryBytes, total.1 + info.inlines.memoryBytes)
        }
    }

    private mutating func tables(of unit: UInt32) -> DebugInfo {
        if let known = tables[unit] { return known }
        let info = withExtendedLifetime(sections) { read(unit) }
        tables[unit] = info
        return info
    }

    /// The tables of one unit, or of everything unplaced.
    private func read(_ id: UInt32) -> DebugInfo {
        let unitIndex = index, info = sections.info
        var abbreviationCache: [UInt64: DWARFAbbreviationTable] = [:]
        var units: [DWARFUnit] = []
        var programs: [(offset: Int, compilationDirectory: [UInt8])] = []
        let offsets = id == Self.unplaced ? unitIndex.unplacedUnits.map { unitIndex.unitOffsets[Int($0)] }
                                          : [unitIndex.unitOffsets[Int(id)]]
        for offset in offsets {
            guard let (found, _) = DWARFUnit.unit(at: offset, in: info, abbreviationCache: &abbreviationCache),
                  let unit = found else { continue }
            units.append(unit)
            if let program = unit.stmtList, program < UInt64(Int.max) {
                programs.append((Int(program), unit.compDir))
            }
        }
        if id == Self.unplaced { programs += unitIndex.orphanPrograms.map { ($0, []) } }
        let isCode = code.containsAddress
        let lines = LineTable(sections: sections.line, programs: programs, keepSequence: isCode)
        let collected = units
        let inlines = InlineTable(sections: info, collecting: collected, lineSections: sections.line,
                                  keepRange: isCode) { offset in
            if let unit = collected.first(where: { $0.offset <= offset && offset < $0.end }) { return unit }
            // A reference into another unit (DW_FORM_ref_addr).
            guard let start = unitIndex.unitOffset(before: offset),
                  let (found, end) = DWARFUnit.unit(at: start, in: info, abbreviationCache: &abbreviationCache),
                  offset < end else { return nil }
            return found
        }
        return DebugInfo(lines: lines, inlines: inlines)
    }
}

/// An image's line and inline tables as the symbolizer keeps them: read
/// per compile unit on first need where the DWARF allows, else whole.
enum ImageDebugInfo: Sendable {
    case whole(DebugInfo)
    case perUnit(UnitDebugInfo)

    static let empty = ImageDebugInfo.whole(.empty)

    /// The tables of an image's DWARF sections, nil without any.
    init?(sections: DWARFSectionSet?, code: [Range<UInt64>], inlinedFrames: Bool) {
        guard let sections else { return nil }
        if inlinedFrames, let perUnit = UnitDebugInfo(sections: sections, code: code) {
            self = .perUnit(perUnit)
        } else {
            self = .whole(DebugInfo(sections: sections, isCode: code.containsAddress, inlinedFrames: inlinedFrames))
        }
    }

    mutating func lookup(_ address: UInt64) -> (location: (file: String, line: Int)?, inlines: [InlineTable.Frame]) {
        switch self {
        case .whole(let info):
            return (info.lines.lookup(address), info.inlines.lookup(address))
        case .perUnit(var tables):
            self = .empty // one reference to the tables while they grow
            defer { self = .perUnit(tables) }
            return tables.lookup(address)
        }
    }

    mutating func readAll() {
        guard case .perUnit(var tables) = self else { return }
        self = .empty
        tables.readAll()
        self = .perUnit(tables)
    }

    /// Units read so far (0 for tables read whole).
    var unitsRead: Int {
        if case .perUnit(let tables) = self { tables.unitsRead } else { 0 }
    }

    var memoryBytes: (lines: Int, inlines: Int) {
        switch self {
        case .whole(let info): (info.lines.memoryBytes, info.inlines.memoryBytes)
        case .perUnit(let tables): tables.memoryBytes
        }
    }
}
