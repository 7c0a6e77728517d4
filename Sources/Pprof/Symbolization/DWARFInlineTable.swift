/// Inlined calls for the addresses of one image, from the
/// DW_TAG_inlined_subroutine entries of its .debug_info, indexed once.
///
/// The ranges of inlined calls nest, so they form a forest: each node is
/// one range of one inlined call, pointing to the node of the call it sits
/// in. The index is a sorted list of boundaries: from addresses[i] up to
/// the next boundary, the innermost call in effect is nodes[innermost[i]]
/// (`none` if no call is inlined there), and its ancestors are the rest.
struct InlineTable: Sendable {
    struct Node: Sendable {
        var name: UInt32       // index into `names`
        var callFile: UInt32   // index into `paths`
        var callLine: UInt32
        var parent: UInt32     // an earlier node, or `none`
    }

    static let none = UInt32.max

    /// One inlined call around an address, as the symbolizer reports it.
    struct Frame: Equatable {
        var function: String
        var systemName: String
        /// Where the inlined function was called from, in its caller.
        var callFile: String
        var callLine: Int
    }

    /// Boundaries as 32-bit offsets from the first (as `LineRows` keeps
    /// addresses: boundaries past 4 GiB are cut, ending in `none`).
    private var base: UInt64 = 0
    private var offsets: [UInt32] = []
    private(set) var innermost: [UInt32] = []
    private(set) var nodes: [Node] = []
    /// Raw (linkage) names, demangled on lookup: demangled Swift names are
    /// long, and only the few looked up are needed.
    private(set) var names: [String] = []
    private(set) var paths: [String] = []

    static let empty = InlineTable()

    var boundaryCount: Int { offsets.count }
    /// The boundaries' addresses, expanded (for tests).
    var addresses: [UInt64] { offsets.map { base &+ UInt64($0) } }
    var nodeCount: Int { nodes.count }

    var memoryBytes: Int {
        offsets.capacity * 4 + innermost.capacity * 4 + nodes.capacity * MemoryLayout<Node>.stride
            + names.capacity * MemoryLayout<String>.stride + names.reduce(0) { $0 + $1.utf8.count }
            + paths.capacity * MemoryLayout<String>.stride + paths.reduce(0) { $0 + $1.utf8.count }
    }

    /// The inlined calls whose code contains `address`, innermost first.
    func lookup(_ address: UInt64) -> [Frame] {
        guard address >= base else { return [] }
        let offset = UInt32(min(address - base, UInt64(UInt32.max)))
        var low = 0, high = offsets.count
        while low < high {
            let middle = (low + high) / 2
            if offsets[middle] <= offset { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return [] }
        var frames: [Frame] = []
        var index = innermost[low - 1]
        // Parents are earlier nodes, so this ends.
        while index != InlineTable.none, Int(index) < nodes.count, frames.count < nodes.count {
            let node = nodes[Int(index)]
            let name = names[Int(node.name)]
            frames.append(Frame(function: demangleSwiftSymbol(name), systemName: name,
                                callFile: paths[Int(node.callFile)], callLine: Int(node.callLine)))
            index = node.parent
        }
        return frames
    }

    private init() {}

    /// Reads every compile unit of `sections.info`. A unit that turns out
    /// malformed contributes nothing. `keepRange` sees each range's start
    /// (ranges of discarded functions start at 0 or -1).
    init(sections: DWARFInfoSections, units: [DWARFUnit], lineSections: DWARFLineSections,
         keepRange: (UInt64) -> Bool = { _ in true }) {
        self.init(sections: sections, collecting: units, lineSections: lineSections, keepRange: keepRange) { offset in
            // The unit holding the DIE: the last one starting before it.
            var low = 0, high = units.count
            while low < high {
                let middle = (low + high) / 2
                if units[middle].offset <= offset { low = middle + 1 } else { high = middle }
            }
            return low > 0 && offset < units[low - 1].end ? units[low - 1] : nil
        }
    }

    /// The inlined calls of `units` only (one compile unit's, read on first
    /// need); `unitContaining` finds the unit of a DIE that a reference
    /// points to, which may be another.
    init(sections: DWARFInfoSections, collecting units: [DWARFUnit], lineSections: DWARFLineSections,
         keepRange: (UInt64) -> Bool, unitContaining: @escaping (Int) -> DWARFUnit?) {
        var builder = InlineTableBuilder(sections: sections, lineSections: lineSections, unitContaining: unitContaining)
        for unit in units where unit.tag == DWARFTag.compileUnit || unit.tag == DWARFTag.partialUnit {
            builder.collect(unit, keepRange: keepRange)
        }
        self = builder.finish()
    }

    fileprivate init(addresses: [UInt64], innermost: [UInt32], nodes: [Node], names: [String], paths: [String]) {
        let base = addresses.first ?? 0
        let count = addresses.firstIndex { $0 &- base > UInt64(UInt32.max - 1) } ?? addresses.count
        var offsets = addresses[..<count].map { UInt32($0 &- base) }
        var innermost = Array(innermost[..<count])
        if count < addresses.count { // cut: no inlined call known past here
            offsets.append(UInt32.max)
            innermost.append(InlineTable.none)
        }
        self.base = base
        self.offsets = offsets
        self.innermost = innermost
        self.nodes = nodes
        self.names = names
        self.paths = paths
    }
}

private struct InlineTableBuilder {
    struct Interval {
        var start: UInt64
        var end: UInt64
        var depth: UInt32
        var call: UInt32
    }

    let sections: DWARFInfoSections
    let lineSections: DWARFLineSections
    /// The unit holding a DIE (by its offset in .debug_info).
    let unitContaining: (Int) -> DWARFUnit?
    var intervals: [Interval] = []
    /// Per inlined call: name, call file and call line (nodes copy them).
    var calls: [(name: UInt32, callFile: UInt32, callLine: UInt32)] = []
    var names: [String] = []
    var nameIndexByDIE: [Int: UInt32] = [:]
    var nameIndexByText: [String: UInt32] = [:]
    var paths = InternedPaths()

    init(sections: DWARFInfoSections, lineSections: DWARFLineSections, unitContaining: @escaping (Int) -> DWARFUnit?) {
        self.sections = sections
        self.lineSections = lineSections
        self.unitContaining = unitContaining
    }

    /// Collects the inlined calls of one unit, or nothing if it is malformed.
    mutating func collect(_ unit: DWARFUnit, keepRange: (UInt64) -> Bool) {
        let intervalCount = intervals.count, callCount = calls.count
        do {
            try walk(unit, keepRange: keepRange)
        } catch {
            intervals.removeSubrange(intervalCount...)
            calls.removeSubrange(callCount...)
        }
    }

    private mutating func walk(_ unit: DWARFUnit, keepRange: (UInt64) -> Bool) throws(MalformedDWARF) {
        let program = unit.stmtList.flatMap {
            LineProgram.header(at: $0, in: lineSections.line, compilationDirectory: unit.compDir)
        }
        var fileIndex: [UInt64: UInt32] = [:]
        var cursor = DWARFCursor(sections.info, offset: unit.firstDIE, limit: unit.end)
        // Per open DIE with children: is it an inlined call?
        var openDIEs: [Bool] = []
        var depth: UInt32 = 0
        while !cursor.isAtEnd {
            let code = try cursor.uleb()
            if code == 0 {
                if let inlined = openDIEs.popLast(), inlined { depth -= 1 }
                continue
            }
            guard let abbreviation = unit.abbreviations[code] else { throw MalformedDWARF() }
            let isInlined = abbreviation.tag == DWARFTag.inlinedSubroutine
            if isInlined {
                var origin: Int?, lowPC: UInt64?, highPC: DWARFUnit.Value?, rangesValue: DWARFUnit.Value?
                var callFile: UInt64 = 0, callLine: UInt64 = 0
                for spec in abbreviation.specs {
                    let value = try unit.readAttribute(spec, &cursor)
                    switch spec.name {
                    case DWARFAttribute.abstractOrigin: origin = unit.reference(value)
                    case DWARFAttribute.lowPC: lowPC = unit.address(value, sections)
                    case DWARFAttribute.highPC: highPC = value
                    case DWARFAttribute.ranges: rangesValue = value
                    case DWARFAttribute.callFile: callFile = value.raw
                    case DWARFAttribute.callLine: callLine = value.raw
                    default: break
                    }
                }
                var ranges: [Range<UInt64>] = []
                if let rangesValue {
                    ranges = unit.ranges(rangesValue, sections)
                } else if let lowPC, let highPC {
                    let end = unit.address(highPC, sections) ?? lowPC &+ highPC.raw
                    if lowPC < end { ranges = [lowPC..<end] }
                }
                ranges.removeAll { !keepRange($0.lowerBound) }
                if !ranges.isEmpty {
                    let file: UInt32
                    if let known = fileIndex[callFile] {
                        file = known
                    } else {
                        file = path(program?.path(ofFile: callFile, sections: lineSections) ?? [])
                        fileIndex[callFile] = file
                    }
                    let call = UInt32(calls.count)
                    calls.append((name(ofDIE: origin), file, callLine <= UInt64(UInt32.max) ? UInt32(callLine) : 0))
                    for range in ranges {
                        intervals.append(Interval(start: range.lowerBound, end: range.upperBound, depth: depth, call: call))
                    }
                }
            } else {
                for spec in abbreviation.specs { _ = try unit.readAttribute(spec, &cursor) }
            }
            if abbreviation.hasChildren {
                openDIEs.append(isInlined)
                if isInlined { depth += 1 }
            }
        }
    }

    mutating func path(_ bytes: [UInt8]) -> UInt32 { paths.intern(bytes) }

    /// The name of the function a DW_AT_abstract_origin points to: its
    /// linkage (mangled) name, else its plain name, following
    /// DW_AT_specification and DW_AT_abstract_origin a few steps.
    mutating func name(ofDIE origin: Int?) -> UInt32 {
        if let origin, let known = nameIndexByDIE[origin] { return known }
        var linkage: [UInt8]?, plain: [UInt8]?
        var next = origin
        var hops = 0
        while let offset = next, hops < 4, linkage == nil {
            hops += 1
            next = nil
            guard let found = attributes(ofDIE: offset) else { break }
            linkage = found.linkage
            if plain == nil { plain = found.plain }
            next = found.next
        }
        let systemName = String(decoding: linkage ?? plain ?? [], as: UTF8.self)
        let index: UInt32
        if let known = nameIndexByText[systemName] {
            index = known
        } else {
            index = UInt32(names.count)
            names.append(systemName)
            nameIndexByText[systemName] = index
        }
        if let origin { nameIndexByDIE[origin] = index }
        return index
    }

    /// Names and the next DIE to look at, for the DIE at `offset` in .debug_info.
    private func attributes(ofDIE offset: Int) -> (linkage: [UInt8]?, plain: [UInt8]?, next: Int?)? {
        guard let unit = unitContaining(offset) else { return nil }
        var cursor = DWARFCursor(sections.info, offset: offset, limit: unit.end)
        guard let code = try? cursor.uleb(), let abbreviation = unit.abbreviations[code] else { return nil }
        var linkage: [UInt8]?, plain: [UInt8]?, next: Int?
        for spec in abbreviation.specs {
            guard let value = try? unit.readAttribute(spec, &cursor) else { return nil }
            switch spec.name {
            case DWARFAttribute.linkageName, DWARFAttribute.mipsLinkageName: linkage = unit.string(value, sections)
            case DWARFAttribute.name: plain = unit.string(value, sections)
            case DWARFAttribute.specification, DWARFAttribute.abstractOrigin: next = unit.reference(value)
            default: break
            }
        }
        return (linkage, plain, next)
    }

    /// Sweeps the intervals in address order, keeping a stack of the calls
    /// in effect; every change of the stack is a boundary. Ranges are meant
    /// to nest; one that pokes out of its enclosing range is cut to it.
    func finish() -> InlineTable {
        let sorted = intervals.sorted {
            if $0.start != $1.start { return $0.start < $1.start }
            if $0.depth != $1.depth { return $0.depth < $1.depth }
            return $0.end > $1.end
        }
        var addresses: [UInt64] = [], innermost: [UInt32] = [], nodes: [InlineTable.Node] = []
        var stack: [(end: UInt64, node: UInt32)] = []

        func boundary(at address: UInt64) {
            if addresses.last == address {
                addresses.removeLast()
                innermost.removeLast()
            }
            addresses.append(address)
            innermost.append(stack.last?.node ?? InlineTable.none)
        }

        for interval in sorted {
            while let top = stack.last, top.end <= interval.start {
                stack.removeLast()
                boundary(at: top.end)
            }
            let end = min(interval.end, stack.last?.end ?? .max)
            guard interval.start < end else { continue }
            let call = calls[Int(interval.call)]
            nodes.append(.init(name: call.name, callFile: call.callFile, callLine: call.callLine,
                               parent: stack.last?.node ?? InlineTable.none))
            stack.append((end, UInt32(nodes.count - 1)))
            boundary(at: interval.start)
        }
        while let top = stack.popLast() {
            boundary(at: top.end)
        }
        return InlineTable(addresses: addresses, innermost: innermost, nodes: compacted(nodes),
                           names: compacted(names), paths: compacted(paths.paths))
    }
}
