/// The .debug_info family of sections; missing ones are empty buffers.
struct DWARFInfoSections {
    var info = UnsafeRawBufferPointer(start: nil, count: 0)
    var abbrev = UnsafeRawBufferPointer(start: nil, count: 0)
    var str = UnsafeRawBufferPointer(start: nil, count: 0)
    var lineStr = UnsafeRawBufferPointer(start: nil, count: 0)
    var strOffsets = UnsafeRawBufferPointer(start: nil, count: 0)
    var addr = UnsafeRawBufferPointer(start: nil, count: 0)
    var ranges = UnsafeRawBufferPointer(start: nil, count: 0)
    var rnglists = UnsafeRawBufferPointer(start: nil, count: 0)
}

enum DWARFTag {
    static let compileUnit: UInt64 = 0x11, inlinedSubroutine: UInt64 = 0x1d, subprogram: UInt64 = 0x2e
    static let partialUnit: UInt64 = 0x3c
}

enum DWARFAttribute {
    static let name: UInt64 = 0x03, stmtList: UInt64 = 0x10, lowPC: UInt64 = 0x11, highPC: UInt64 = 0x12
    static let compDir: UInt64 = 0x1b, abstractOrigin: UInt64 = 0x31, specification: UInt64 = 0x47
    static let ranges: UInt64 = 0x55, callFile: UInt64 = 0x58, callLine: UInt64 = 0x59
    static let linkageName: UInt64 = 0x6e, strOffsetsBase: UInt64 = 0x72, addrBase: UInt64 = 0x73
    static let rnglistsBase: UInt64 = 0x74, mipsLinkageName: UInt64 = 0x2007
}

/// One abbreviation declaration: a DIE's tag, whether it has children,
/// and its attributes' names and forms.
struct DWARFAbbreviation {
    struct Spec {
        var name: UInt64
        var form: UInt64
        var implicitConst: Int64
    }
    var tag: UInt64
    var hasChildren: Bool
    var specs: [Spec]
}

/// The abbreviation table at one .debug_abbrev offset. Codes are usually
/// 1...N, so they index an array; others go to a dictionary.
struct DWARFAbbreviationTable {
    private var dense: [DWARFAbbreviation?] = []
    private var sparse: [UInt64: DWARFAbbreviation] = [:]

    /// - Parameter only: keep this code's declaration alone (for a unit's
    ///   top DIE), skipping the others' bytes; nil for the whole table.
    init(_ abbrev: UnsafeRawBufferPointer, offset: UInt64, only: UInt64? = nil) throws(MalformedDWARF) {
        guard offset < UInt64(abbrev.count) else { throw MalformedDWARF() }
        var cursor = DWARFCursor(abbrev, offset: Int(offset))
        while true {
            let code = try cursor.uleb()
            if code == 0 { break }
            let tag = try cursor.uleb()
            let hasChildren = try cursor.u8() != 0
            if let only, code != only {
                while true { // skipped: nothing allocated
                    let name = try cursor.uleb(), form = try cursor.uleb()
                    if name == 0 && form == 0 { break }
                    if form == DWARFForm.implicitConst { _ = try cursor.sleb() }
                }
                continue
            }
            var specs: [DWARFAbbreviation.Spec] = []
            while true {
                let name = try cursor.uleb()
                let form = try cursor.uleb()
                if name == 0 && form == 0 { break }
                let implicitConst = form == DWARFForm.implicitConst ? try cursor.sleb() : 0
                specs.append(.init(name: name, form: form, implicitConst: implicitConst))
            }
            let declaration = DWARFAbbreviation(tag: tag, hasChildren: hasChildren, specs: specs)
            if code < 1 << 14 {
                if dense.count <= Int(code) { dense += Array(repeating: nil, count: Int(code) + 1 - dense.count) }
                dense[Int(code)] = declaration
            } else {
                sparse[code] = declaration
            }
            if code == only { break }
        }
    }

    subscript(code: UInt64) -> DWARFAbbreviation? {
        code < UInt64(dense.count) ? dense[Int(code)] : sparse[code]
    }
}

/// A compilation unit's header and the attributes of its top DIE that
/// later reads depend on.
struct DWARFUnit {
    var offset: Int          // of the unit header in .debug_info
    var end: Int
    var version: UInt16
    var offsetSize: Int
    var addressSize: Int
    var abbreviations: DWARFAbbreviationTable
    var firstDIE: Int
    var tag: UInt64 = 0
    var lowPC: UInt64 = 0
    var strOffsetsBase: UInt64 = 8 // past the DWARF 5 header, the usual value
    var addrBase: UInt64 = 8
    var rnglistsBase: UInt64?
    var stmtList: UInt64?
    var compDir: [UInt8] = []
    var hasLowPC = false
    var highPC: Value?
    var rangesValue: Value?

    /// Units of .debug_info with code (compile and partial units; type,
    /// skeleton and split units are skipped). A malformed unit ends the list.
    static func units(in sections: DWARFInfoSections) -> [DWARFUnit] {
        var units: [DWARFUnit] = []
        var abbreviationCache: [UInt64: DWARFAbbreviationTable] = [:]
        var offset = 0
        while let (unit, end) = unit(at: offset, in: sections, abbreviationCache: &abbreviationCache) {
            if let unit { units.append(unit) }
            offset = end
        }
        return units
    }

    /// The unit whose header is at `start`, and where the next one starts;
    /// (nil, end) for a unit to skip (another type, malformed inside); nil
    /// at the end of the section or if the next unit cannot be found.
    /// - Parameter topDIEOnly: read only the top DIE's abbreviation
    ///   (the unit cannot be walked then); `abbreviationCache` unused.
    static func unit(at start: Int, in sections: DWARFInfoSections,
                     abbreviationCache: inout [UInt64: DWARFAbbreviationTable],
                     topDIEOnly: Bool = false) -> (unit: DWARFUnit?, end: Int)? {
        var cursor = DWARFCursor(sections.info, offset: start)
        guard !cursor.isAtEnd, let (length, offsetSize) = try? cursor.initialLength(),
              length <= UInt64(cursor.remaining) else { return nil }
        let end = cursor.offset + Int(length)
        var header = DWARFCursor(sections.info, offset: cursor.offset, limit: end)
        guard let version = try? header.fixed(UInt16.self), (2...5).contains(version) else { return (nil, end) }
        var unitType: UInt8 = 1 // DW_UT_compile
        let abbrevOffset: UInt64
        let addressSize: Int
        do {
            if version >= 5 {
                unitType = try header.u8()
                addressSize = Int(try header.u8())
                abbrevOffset = try header.sectionOffset(size: offsetSize)
            } else {
                abbrevOffset = try header.sectionOffset(size: offsetSize)
                addressSize = Int(try header.u8())
            }
        } catch { return (nil, end) }
        // DW_UT_compile and DW_UT_partial only.
        guard unitType == 1 || unitType == 3, addressSize == 4 || addressSize == 8 else { return (nil, end) }
        let table: DWARFAbbreviationTable
        if topDIEOnly {
            var top = DWARFCursor(sections.info, offset: header.offset, limit: end)
            guard let code = try? top.uleb(),
                  let parsed = try? DWARFAbbreviationTable(sections.abbrev, offset: abbrevOffset, only: code)
            else { return (nil, end) }
            table = parsed
        } else if let cached = abbreviationCache[abbrevOffset] {
            table = cached
        } else {
            guard let parsed = try? DWARFAbbreviationTable(sections.abbrev, offset: abbrevOffset) else { return (nil, end) }
            abbreviationCache[abbrevOffset] = parsed
            table = parsed
        }
        var unit = DWARFUnit(offset: start, end: end, version: version, offsetSize: offsetSize,
                             addressSize: addressSize, abbreviations: table, firstDIE: header.offset)
        guard (try? unit.readTopDIE(sections)) != nil else { return (nil, end) }
        return (unit, end)
    }

    /// The code addresses the unit DIE claims (DW_AT_ranges, or
    /// DW_AT_low_pc with DW_AT_high_pc); nil if it claims none.
    func addressRanges(_ sections: DWARFInfoSections) -> [Range<UInt64>]? {
        if let rangesValue { return ranges(rangesValue, sections) }
        guard hasLowPC, let highPC else { return nil }
        let end = address(highPC, sections) ?? lowPC &+ highPC.raw
        return lowPC < end ? [lowPC..<end] : []
    }

    /// Reads the unit DIE's bases first (strx and addrx values depend on
    /// them, wherever they appear in the DIE), then the rest.
    private mutating func readTopDIE(_ sections: DWARFInfoSections) throws(MalformedDWARF) {
        var cursor = DWARFCursor(sections.info, offset: firstDIE, limit: end)
        guard let abbreviation = abbreviations[try cursor.uleb()] else { throw MalformedDWARF() }
        tag = abbreviation.tag
        let attributesStart = cursor.offset
        for pass in 0..<2 {
            cursor.offset = attributesStart
            for spec in abbreviation.specs {
                let value = try readAttribute(spec, &cursor)
                switch (pass, spec.name) {
                case (0, DWARFAttribute.strOffsetsBase): strOffsetsBase = value.raw
                case (0, DWARFAttribute.addrBase): addrBase = value.raw
                case (0, DWARFAttribute.rnglistsBase): rnglistsBase = value.raw
                case (1, DWARFAttribute.lowPC):
                    lowPC = address(value, sections) ?? 0
                    hasLowPC = true
                case (1, DWARFAttribute.highPC): highPC = value
                case (1, DWARFAttribute.ranges): rangesValue = value
                case (1, DWARFAttribute.stmtList): stmtList = value.raw
                case (1, DWARFAttribute.compDir): compDir = string(value, sections) ?? []
                default: break
                }
            }
        }
    }

    // MARK: Attribute values

    /// An attribute's form and raw value: a constant, an offset, an index,
    /// an address, or for DW_FORM_string where the string starts.
    struct Value {
        var form: UInt64
        var raw: UInt64
    }

    func readAttribute(_ spec: DWARFAbbreviation.Spec, _ cursor: inout DWARFCursor) throws(MalformedDWARF) -> Value {
        var form = spec.form
        if form == DWARFForm.indirect { form = try cursor.uleb() }
        switch form {
        case DWARFForm.addr: return Value(form: form, raw: try cursor.unsigned(size: addressSize))
        case DWARFForm.data1, DWARFForm.ref1, DWARFForm.flag, DWARFForm.strx1, DWARFForm.addrx1:
            return Value(form: form, raw: try cursor.unsigned(size: 1))
        case DWARFForm.data2, DWARFForm.ref2, DWARFForm.strx2, DWARFForm.addrx2:
            return Value(form: form, raw: try cursor.unsigned(size: 2))
        case DWARFForm.strx3, DWARFForm.addrx3:
            return Value(form: form, raw: try cursor.unsigned(size: 3))
        case DWARFForm.data4, DWARFForm.ref4, DWARFForm.refSup4, DWARFForm.strx4, DWARFForm.addrx4:
            return Value(form: form, raw: try cursor.unsigned(size: 4))
        case DWARFForm.data8, DWARFForm.ref8, DWARFForm.refSig8, DWARFForm.refSup8:
            return Value(form: form, raw: try cursor.unsigned(size: 8))
        case DWARFForm.data16:
            try cursor.skip(16)
        case DWARFForm.udata, DWARFForm.refUdata, DWARFForm.strx, DWARFForm.addrx, DWARFForm.loclistx,
             DWARFForm.rnglistx, DWARFForm.gnuAddrIndex, DWARFForm.gnuStrIndex:
            return Value(form: form, raw: try cursor.uleb())
        case DWARFForm.sdata:
            return Value(form: form, raw: UInt64(bitPattern: try cursor.sleb()))
        case DWARFForm.strp, DWARFForm.lineStrp, DWARFForm.secOffset, DWARFForm.strpSup,
             DWARFForm.gnuRefAlt, DWARFForm.gnuStrpAlt:
            return Value(form: form, raw: try cursor.sectionOffset(size: offsetSize))
        case DWARFForm.refAddr:
            return Value(form: form, raw: try cursor.sectionOffset(size: version <= 2 ? addressSize : offsetSize))
        case DWARFForm.string:
            return Value(form: form, raw: UInt64(try cursor.skipCString()))
        case DWARFForm.block1: try cursor.skip(try cursor.unsigned(size: 1))
        case DWARFForm.block2: try cursor.skip(try cursor.unsigned(size: 2))
        case DWARFForm.block4: try cursor.skip(try cursor.unsigned(size: 4))
        case DWARFForm.block, DWARFForm.exprloc: try cursor.skip(try cursor.uleb())
        case DWARFForm.flagPresent: return Value(form: form, raw: 1)
        case DWARFForm.implicitConst: return Value(form: form, raw: UInt64(bitPattern: spec.implicitConst))
        default: throw MalformedDWARF() // unknown size: the rest of the unit cannot be read
        }
        return Value(form: form, raw: 0)
    }

    /// A string attribute's bytes, nil if its form is not a string or it
    /// points outside its section.
    func string(_ value: Value, _ sections: DWARFInfoSections) -> [UInt8]? {
        let bytes: UnsafeRawBufferPointer?
        switch value.form {
        case DWARFForm.string: bytes = dwarfCString(in: sections.info, at: value.raw)
        case DWARFForm.strp: bytes = dwarfCString(in: sections.str, at: value.raw)
        case DWARFForm.lineStrp: bytes = dwarfCString(in: sections.lineStr, at: value.raw)
        case DWARFForm.strx, DWARFForm.strx1, DWARFForm.strx2, DWARFForm.strx3, DWARFForm.strx4:
            guard let offset = tableEntry(sections.strOffsets, base: strOffsetsBase, index: value.raw, size: offsetSize)
            else { return nil }
            bytes = dwarfCString(in: sections.str, at: offset)
        default: return nil
        }
        return bytes.map { Array($0) }
    }

    /// An address attribute: DW_FORM_addr, or an index into .debug_addr.
    func address(_ value: Value, _ sections: DWARFInfoSections) -> UInt64? {
        switch value.form {
        case DWARFForm.addr: return value.raw
        case DWARFForm.addrx, DWARFForm.addrx1, DWARFForm.addrx2, DWARFForm.addrx3, DWARFForm.addrx4:
            return tableEntry(sections.addr, base: addrBase, index: value.raw, size: addressSize)
        default: return nil
        }
    }

    /// A reference attribute as an offset in .debug_info; nil for
    /// references into other files (supplementary, type units).
    func reference(_ value: Value) -> Int? {
        switch value.form {
        case DWARFForm.ref1, DWARFForm.ref2, DWARFForm.ref4, DWARFForm.ref8, DWARFForm.refUdata:
            guard value.raw < UInt64(end - offset) else { return nil }
            return offset + Int(value.raw)
        case DWARFForm.refAddr:
            return value.raw < UInt64(Int.max) ? Int(value.raw) : nil
        default: return nil
        }
    }

    /// Entry `index` of a table of `size`-byte values starting at `base`.
    func tableEntry(_ section: UnsafeRawBufferPointer, base: UInt64, index: UInt64, size: Int) -> UInt64? {
        guard index < UInt64(section.count), base < UInt64(section.count) else { return nil }
        let offset = base + index * UInt64(size)
        guard offset < UInt64(section.count) else { return nil }
        var cursor = DWARFCursor(section, offset: Int(offset))
        return try? cursor.unsigned(size: size)
    }

    /// The address ranges of a DIE from DW_AT_ranges: .debug_ranges before
    /// DWARF 5, .debug_rnglists (by offset or by DW_FORM_rnglistx) from 5.
    func ranges(_ value: Value, _ sections: DWARFInfoSections) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        func add(_ start: UInt64, _ end: UInt64) {
            if start < end && result.count < 1 << 16 { result.append(start..<end) }
        }
        if version < 5 {
            guard value.raw < UInt64(sections.ranges.count) else { return [] }
            var cursor = DWARFCursor(sections.ranges, offset: Int(value.raw))
            let baseSelector: UInt64 = addressSize == 8 ? .max : 0xffff_ffff
            var base = lowPC
            while let start = try? cursor.unsigned(size: addressSize), let end = try? cursor.unsigned(size: addressSize) {
                if start == 0 && end == 0 { break }
                if start == baseSelector { base = end; continue }
                add(base &+ start, base &+ end)
            }
            return result
        }
        var offset = value.raw
        if value.form == DWARFForm.rnglistx {
            let base = rnglistsBase ?? 12 // past a 32-bit .debug_rnglists header
            guard let relative = tableEntry(sections.rnglists, base: base, index: value.raw, size: offsetSize) else {
                return []
            }
            offset = base &+ relative
        }
        guard offset < UInt64(sections.rnglists.count) else { return [] }
        var cursor = DWARFCursor(sections.rnglists, offset: Int(offset))
        var base = lowPC
        func indexed(_ index: UInt64) -> UInt64? {
            tableEntry(sections.addr, base: addrBase, index: index, size: addressSize)
        }
        do throws(MalformedDWARF) {
            loop: while true {
                switch try cursor.u8() {
                case 0: break loop // DW_RLE_end_of_list
                case 1: base = indexed(try cursor.uleb()) ?? 0 // base_addressx
                case 2: // startx_endx
                    let start = indexed(try cursor.uleb()), end = indexed(try cursor.uleb())
                    if let start, let end { add(start, end) }
                case 3: // startx_length
                    let start = indexed(try cursor.uleb()), length = try cursor.uleb()
                    if let start { add(start, start &+ length) }
                case 4: // offset_pair
                    let start = try cursor.uleb(), end = try cursor.uleb()
                    add(base &+ start, base &+ end)
                case 5: base = try cursor.unsigned(size: addressSize) // base_address
                case 6: // start_end
                    let start = try cursor.unsigned(size: addressSize), end = try cursor.unsigned(size: addressSize)
                    add(start, end)
                case 7: // start_length
                    let start = try cursor.unsigned(size: addressSize), length = try cursor.uleb()
                    add(start, start &+ length)
                default: break loop
                }
            }
        } catch {}
        return result
    }
}
