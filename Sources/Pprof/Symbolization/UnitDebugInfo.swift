/// The line and inline tables of one image, read per compile unit when an
/// address first lands in it: a first profile runs the line programs and
/// walks the DIEs of the units its stacks touch, not of the whole image
/// (a few of hundreds in the demo; of libc's 4,100 programs, those of the
/// functions on its stacks), and only those units' tables are kept.
///
/// Lookups give what the whole-image tables (`DebugInfo`) give: each unit's
/// rows and inlined calls are read by the same code, from the same
/// sections. Compressed sections (system libraries' debug files) are
/// inflated when a unit must be read and let go after a request that read
/// none of the image's units (`releaseInflatedSections`): kept for good,
/// they would cost more than the tables. A compressed line section of a
/// lines-only image (libc's) keeps restart points (`InflateIndex`) and its
/// small string sections: a unit needed after the section was let go
/// inflates from the nearest point before it, not the whole section again.
struct UnitDebugInfo: Sendable {
    private let source: DWARFSource
    /// The sections, while mapped or inflated.
    private var sections: DWARFSectionSet?
    /// For a compressed line section read by programs: its restart points
    /// and the string sections its headers name files in, kept when the
    /// sections are let go.
    private let lineIndex: InflateIndex?
    private let keptStrings: [DebugSectionData?]
    private let index: DWARFUnitIndex
    private let code: [Range<UInt64>]
    /// Tables read so far, by unit (`DWARFUnitIndex`'s numbering);
    /// `UnitDebugInfo.unplaced` for what the index could not place.
    private var tables: [UInt32: DebugInfo] = [:]

    private static let unplaced = UInt32.max

    /// Indexes the units of `sections` (opened from `source`): by their
    /// unit DIEs where inlined calls are wanted and .debug_info is there,
    /// else by their line programs' sequences (files and lines only).
    init(source: DWARFSource, sections: DWARFSectionSet, code: [Range<UInt64>]) {
        self.source = source
        self.sections = sections
        self.code = code
        index = !source.linesOnly && sections.info.info.count > 0
            ? DWARFUnitIndex(info: sections.info, line: sections.line, isCode: code.containsAddress)
            : DWARFUnitIndex(programsIn: sections.line, isCode: code.containsAddress)
        let partial = index.kind == .programs && sections.lineIndex != nil
        lineIndex = partial ? sections.lineIndex : nil
        keptStrings = partial ? sections.stringSections : []
    }

    /// Whether inflated sections are held (until `releaseInflatedSections`).
    var holdsInflatedSections: Bool { sections?.ownsInflatedData == true }

    /// Lets inflated sections go; mapped ones stay (they cost page cache only).
    mutating func releaseInflatedSections() {
        if holdsInflatedSections { sections = nil }
    }

    /// File and line of an ELF virtual address, and the inlined calls
    /// around it (innermost first), reading the tables it needs.
    mutating func lookup(_ address: UInt64) -> (location: (file: String, line: Int)?, inlines: [InlineTable.Frame]) {
        var candidates = index.units(containing: address)
        if index.kind == .units { candidates.append(Self.unplaced) }
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
        if index.kind == .units { _ = tables(of: Self.unplaced) }
        for unit in index.unitOffsets.indices { _ = tables(of: UInt32(unit)) }
    }

    /// Takes the tables of the units `other` (the same image's tables,
    /// read further on a copy by the read-ahead) read and this one has
    /// not; and its sections if this one let its own go.
    mutating func adoptUnits(of other: UnitDebugInfo) {
        for (unit, info) in other.tables where tables[unit] == nil { tables[unit] = info }
        if sections == nil { sections = other.sections }
    }

    /// How many units' tables (and the unplaced ones) were read so far.
    var unitsRead: Int { tables.count }

    /// What was read, for tests: per unit read, its row count; and the index's bytes.
    var readRows: [Int] { tables.values.map(\.lines.rowCount) }
    var indexBytes: Int { index.memoryBytes }

    /// Compile and partial units in the image.
    var unitCount: Int { index.unitOffsets.count }

    /// Bytes of the tables read so far; the index and inflated sections
    /// held count as line tables.
    var memoryBytes: (lines: Int, inlines: Int) {
        let inflated = sections?.inflatedBytes ?? keptStrings.reduce(0) { $0 + ($1?.bytes.count ?? 0) }
        let held = index.memoryBytes + inflated + (lineIndex?.memoryBytes ?? 0)
        return tables.values.reduce((held, 0)) { total, info in
            (total.0 + info.lines.memoryBytes, total.1 + info.inlines.memoryBytes)
        }
    }

    private mutating func tables(of unit: UInt32) -> DebugInfo {
        if let known = tables[unit] { return known }
        if sections == nil, let partial = partialSections(unit) {
            let info = withExtendedLifetime(partial) { read(unit, in: partial) }
            tables[unit] = info
            return info
        }
        if sections == nil, MemoryHeadroom.isAvailable(source.image.bytes.count) { sections = source.open() }
        // Not cached: the next request tries again.
        guard let sections else { return .empty }
        let info = withExtendedLifetime(sections) { read(unit, in: sections) }
        tables[unit] = info
        return info
    }

    /// Sections in which only `unit`'s line program is inflated (from the
    /// nearest restart point before it), for a lines-only image whose
    /// compressed sections were let go; nil if there is no index or the
    /// inflate fails (then the whole section is inflated as before).
    private func partialSections(_ unit: UInt32) -> DWARFSectionSet? {
        guard let lineIndex, unit != Self.unplaced, Int(unit) < index.unitOffsets.count else { return nil }
        let start = index.unitOffsets[Int(unit)]
        // Programs follow each other: this one ends where the next starts.
        let end = Int(unit) + 1 < index.unitOffsets.count ? index.unitOffsets[Int(unit) + 1] : lineIndex.size
        guard start < end, MemoryHeadroom.isAvailable(InflateIndex.spacing + (end - start)),
              let line = lineIndex.inflating(start..<end) else { return nil }
        return DWARFSectionSet(partialLine: line, strings: keptStrings, file: source.file)
    }

    /// The tables of one unit, or of everything unplaced.
    private func read(_ id: UInt32, in sections: DWARFSectionSet) -> DebugInfo {
        if index.kind == .programs {
            guard id != Self.unplaced else { return .empty }
            let lines = LineTable(sections: sections.line, programs: [(index.unitOffsets[Int(id)], [])],
                                  keepSequence: code.containsAddress)
            return DebugInfo(lines: lines, inlines: .empty)
        }
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

/// An image's line and inline tables as the symbolizer keeps them: none
/// (no DWARF), or read per unit on first need.
struct ImageDebugInfo: Sendable {
    private var tables: UnitDebugInfo?

    static let empty = ImageDebugInfo(tables: nil)

    private init(tables: UnitDebugInfo?) {
        self.tables = tables
    }

    /// The tables of an image's DWARF, nil if it has none.
    init?(source: DWARFSource) {
        guard let sections = source.open() else { return nil }
        tables = UnitDebugInfo(source: source, sections: sections, code: source.image.codeRanges())
    }

    mutating func lookup(_ address: UInt64) -> (location: (file: String, line: Int)?, inlines: [InlineTable.Frame]) {
        tables?.lookup(address) ?? (nil, [])
    }

    mutating func readAll() { tables?.readAll() }

    mutating func adoptUnits(of other: ImageDebugInfo) {
        if let theirs = other.tables { tables?.adoptUnits(of: theirs) }
    }

    var holdsInflatedSections: Bool { tables?.holdsInflatedSections ?? false }

    mutating func releaseInflatedSections() { tables?.releaseInflatedSections() }

    /// Units read so far.
    var unitsRead: Int { tables?.unitsRead ?? 0 }

    var memoryBytes: (lines: Int, inlines: Int) { tables?.memoryBytes ?? (0, 0) }
}
