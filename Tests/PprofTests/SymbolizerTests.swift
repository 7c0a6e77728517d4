import Glibc
import Testing
@testable import Pprof

// glibc's backtrace(3) (execinfo.h is not in Swift's Glibc module).
private typealias BacktraceFunction = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32) -> Int32

private func libcFunction(_ name: String) -> UnsafeMutableRawPointer? {
    dlsym(dlopen(nil, RTLD_LAZY), name)
}

private func address(_ pointer: UnsafeMutableRawPointer) -> UInt64 {
    UInt64(UInt(bitPattern: pointer))
}

private let symbolizationProbeFirstLine = #line
/// Returns a call address inside itself (return address - 1, as profiles
/// pass them).
@inline(never)
func symbolizationProbe(_ seed: Int) -> UInt64 {
    let backtrace = unsafeBitCast(libcFunction("backtrace")!, to: BacktraceFunction.self)
    var frames = [UnsafeMutableRawPointer?](repeating: nil, count: 4 + (seed & 1))
    _ = backtrace(&frames, 1)
    return UInt64(UInt(bitPattern: frames[0])) - 1
}
private let symbolizationProbeLastLine = #line

private func readExecutablePath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
}

private func isLowercaseHex(_ s: String) -> Bool {
    s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
}

/// The test executable's own function symbols, read with the library's ELF reader.
private func executableSymbols() throws -> FunctionSymbolTable {
    let file = try #require(MappedFile(path: "/proc/self/exe"))
    let image = try #require(ELFImage(bytes: file.bytes))
    return FunctionSymbolTable(image: image, file: file)
}

private func loadBias(ofMainProgram objects: [LoadedObject]) throws -> UInt64 {
    try #require(objects.first { $0.isMainProgram }).bias
}

/// Where a distribution installs the separate debug file of a build id, if present.
private func separateDebugFile(buildID: String) -> String? {
    guard buildID.utf8.count > 2 else { return nil }
    let path = "/usr/lib/debug/.build-id/\(buildID.prefix(2))/\(buildID.dropFirst(2)).debug"
    return access(path, R_OK) == 0 ? path : nil
}

private func libcBuildID() -> String {
    guard let getpidPointer = libcFunction("getpid") else { return "" }
    let getpidAddress = address(getpidPointer)
    return DynamicLoader.objects().objects.first { $0.contains(getpidAddress) }?.buildID ?? ""
}

/// Symbolizes the start of every inlined-call boundary (up to `limit`) and
/// checks the frames against the tables: one frame per inlined call, named
/// after it, innermost first, each outer frame at the call site of the one
/// inside it, the innermost at the line table's location. Returns how many
/// addresses had inlined calls.
private func expectFramesFollowTheTables(_ info: DebugInfo, bias: UInt64, symbolizer: Symbolizer,
                                         limit: Int = 2000) -> Int {
    var checked = 0
    for address in info.inlines.addresses where checked < limit {
        let chain = info.inlines.lookup(address)
        guard !chain.isEmpty else { continue }
        let frames = symbolizer.frames(at: bias + address)
        // Unnamed code: e.g. the copies of a weak function the linker did not pick.
        if frames.isEmpty { continue }
        guard frames.count == chain.count + 1 else {
            Issue.record("at 0x\(String(address, radix: 16)): \(frames) for \(chain)")
            continue
        }
        checked += 1
        let location = info.lines.lookup(address)
        #expect(frames[0].file == location?.file ?? "" && frames[0].line == location?.line ?? 0)
        for (index, call) in chain.enumerated() {
            #expect(frames[index].systemName == call.systemName && frames[index].function == call.function)
            #expect(frames[index].entry == 0)
            #expect(frames[index + 1].file == call.callFile && frames[index + 1].line == call.callLine)
        }
        #expect(frames[chain.count].entry != 0)
    }
    return checked
}

@Suite struct SymbolizerTests {
    @Test func namesAnInternalSwiftFunction() throws {
        let probe = symbolizationProbe(Int(getpid()))
        let frames = Symbolizer().frames(at: probe)
        let frame = try #require(frames.last)
        #expect(frame.function.contains("PprofTests.symbolizationProbe("), "\(frame)")
        #expect(frame.systemName.hasPrefix("$s"))
        #expect(frame.entry != 0 && frame.entry <= probe && probe - frame.entry < 4096)
        #expect(demangleSwiftSymbol(frame.systemName) == frame.function)
        // Cached answers are the same answers.
        #expect(Symbolizer.shared.frames(at: probe) == Symbolizer.shared.frames(at: probe))
        #expect(Symbolizer.shared.frames(at: probe) == frames)
    }

    @Test func namesLibcFunctionsAndReadsLibcBuildID() throws {
        let getpidPointer: UnsafeMutableRawPointer? = libcFunction("getpid")
        let getpidAddress = address(try #require(getpidPointer))
        let symbolizer = Symbolizer()
        for pc in [getpidAddress, getpidAddress + 1] {
            let frame = try #require(symbolizer.frames(at: pc).last)
            #expect(frame.function == "getpid")
            #expect(frame.systemName == "getpid")
            #expect(frame.entry == getpidAddress)
        }
        let libc = try #require(symbolizer.executableMappings().first { $0.start <= getpidAddress && getpidAddress < $0.limit })
        #expect(libc.path.contains("libc"))
        #expect(libc.buildID.utf8.count == 40 && isLowercaseHex(libc.buildID), "\(libc)")
        // The build id on disk matches the one the loader mapped.
        let loaded = DynamicLoader.objects().objects.first { $0.contains(getpidAddress) }
        #expect(loaded?.buildID == libc.buildID)
    }

    @Test func executableMappingsListTheMainExecutableFirst() throws {
        let mappings = Symbolizer().executableMappings()
        let first = try #require(mappings.first)
        #expect(first.path == readExecutablePath())
        #expect(!first.buildID.isEmpty && isLowercaseHex(first.buildID))
        #expect(mappings.contains { $0.path == "[vdso]" && $0.buildID.isEmpty })
        #expect(!mappings.contains { $0.path.hasSuffix(" (deleted)") || $0.path.isEmpty })
        let sorted = mappings.sorted { $0.start < $1.start }
        for mapping in sorted { #expect(mapping.start < mapping.limit, "\(mapping)") }
        for (a, b) in zip(sorted, sorted.dropFirst()) { #expect(a.limit <= b.start, "\(a) overlaps \(b)") }
        let probe = symbolizationProbe(0)
        #expect(mappings.contains { $0.path == first.path && $0.start <= probe && probe < $0.limit })
    }

    @Test func parsesProcMapsLines() {
        let text = """
        55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234   /usr/bin/my app
        55d0c0a21000-55d0c0b00000 r-xp 00021000 08:01 1234   /usr/bin/my app (deleted)
        7ffd1c3f0000-7ffd1c3f2000 r-xp 00000000 00:00 0      [vdso]
        7f0000000000-7f0000001000 r-xp 00000000 00:00 0
        ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]
        """
        let entries = ProcMapsEntry.parseExecutable(Array(text.utf8))
        #expect(entries.map(\.path) == ["/usr/bin/my app", "[vdso]", "[vsyscall]"])
        #expect(entries.first?.start == 0x55d0_c0a2_1000 && entries.first?.limit == 0x55d0_c0b0_0000)
        #expect(entries.first?.fileOffset == 0x21000 && entries.first?.inode == 1234)
    }

    @Test func demanglesSwiftAndLeavesOtherNamesAlone() {
        #expect(demangleSwiftSymbol("$sSi") == "Swift.Int")
        #expect(demangleSwiftSymbol("$sSS") == "Swift.String")
        for name in ["getpid", "main", "_ZN3foo3barEv", "$notswift", ""] {
            #expect(demangleSwiftSymbol(name) == name)
        }
    }

    @Test func sizeZeroSymbolsReachToTheNextSymbol() throws {
        let table = try executableSymbols()
        let main = try #require(table.entries.first { table.image.cString(at: $0.nameOffset) == "main" })
        #expect(table.lookup(main.address)?.name == "main")
        #expect(table.lookup(main.address + 1)?.name == "main")
        let objects = DynamicLoader.objects().objects
        let bias = try loadBias(ofMainProgram: objects)
        #expect(Symbolizer().frames(at: bias + main.address + 1).last?.function == "main")
    }

    @Test func readsTheVDSOFromMemory() throws {
        let vdso = try #require(DynamicLoader.objects().objects.first { $0.name.hasPrefix("linux-vdso") })
        let memory = try #require(vdso.memoryImage)
        let image = try #require(ELFImage(bytes: UnsafeRawBufferPointer(
            start: UnsafeRawPointer(bitPattern: UInt(memory.start)), count: Int(memory.count))))
        let table = FunctionSymbolTable(image: image, file: nil)
        let entry = try #require(table.entries.first)
        let name = try #require(image.cString(at: entry.nameOffset))
        #expect(Symbolizer().frames(at: vdso.bias + entry.address).last?.function == name)
    }

    @Test func findsLibrariesLoadedLaterAndRateLimitsRescans() throws {
        let limited = Symbolizer(rescanInterval: .seconds(3600))
        let eager = Symbolizer(rescanInterval: .zero)
        let probe = symbolizationProbe(0)
        #expect(!limited.frames(at: probe).isEmpty && !eager.frames(at: probe).isEmpty)
        let handle = try #require(dlopen("libexpat.so.1", RTLD_NOW | RTLD_LOCAL))
        defer { dlclose(handle) }
        let versionPointer: UnsafeMutableRawPointer? = dlsym(handle, "XML_ExpatVersion")
        let function = address(try #require(versionPointer))
        #expect(eager.frames(at: function).last?.function == "XML_ExpatVersion")
        // Scanned once at start; misses within the interval do not rescan.
        #expect(limited.frames(at: function).isEmpty)
        for pc in stride(from: UInt64(0x1000), to: 0x2000, by: 64) { _ = limited.frames(at: pc) }
        #expect(limited.scanCount == 1)
    }

    @Test func resolvesFileAndLineOfASwiftFunction() throws {
        let probe = symbolizationProbe(1)
        let frame = try #require(Symbolizer().frames(at: probe).last)
        #expect(frame.function.contains("PprofTests.symbolizationProbe("), "\(frame)")
        #expect(frame.file == #filePath, "\(frame)")
        #expect(frame.line > symbolizationProbeFirstLine && frame.line < symbolizationProbeLastLine, "\(frame)")
        // The entry is in the function too: its first line is the declaration's.
        let entry = try #require(Symbolizer.shared.frames(at: frame.entry).last)
        #expect(entry.file == #filePath)
        #expect(entry.line > symbolizationProbeFirstLine && entry.line <= frame.line, "\(entry)")
    }

    @Test func librariesWithoutLineInfoStillGetNames() throws {
        // libswiftCore ships without DWARF.
        let pointer: UnsafeMutableRawPointer? = libcFunction("swift_demangle")
        let function = address(try #require(pointer))
        let object = try #require(DynamicLoader.objects().objects.first { $0.contains(function) })
        let file = try #require(MappedFile(path: object.openPath))
        let image = try #require(ELFImage(bytes: file.bytes))
        try #require(DebugInfo(image: image) == nil, "\(object.name) has DWARF; the test needs a library without")
        try #require(separateDebugFile(buildID: object.buildID) == nil)
        let frame = try #require(Symbolizer().frames(at: function + 1).last)
        #expect(frame.function == "swift_demangle")
        #expect(frame.file == "" && frame.line == 0, "\(frame)")
    }

    @Test(.enabled(if: separateDebugFile(buildID: libcBuildID()) != nil, "libc's debug file (libc6-dbg) is not installed"))
    func readsLinesFromSeparateCompressedDebugFiles() throws {
        let pointer: UnsafeMutableRawPointer? = libcFunction("abort")
        let function = address(try #require(pointer))
        let symbolizer = Symbolizer()
        let frames = symbolizer.frames(at: function + 1)
        let frame = try #require(frames.last)
        #expect(frame.function == "abort")
        #expect(frame.file.hasSuffix("stdlib/abort.c") && frame.line > 0, "\(frame)")
        // Separate debug files give files and lines only: their inlined calls
        // are not indexed (libc's .debug_info takes seconds in a debug build).
        #expect(frames.count == 1)
        let libc = try #require(DynamicLoader.objects().objects.first { $0.contains(function) })
        let path = try #require(separateDebugFile(buildID: libc.buildID))
        let file = try #require(MappedFile(path: path))
        let image = try #require(ELFImage(bytes: file.bytes))
        let info = try #require(DebugInfo(image: image, inlinedFrames: false))
        #expect(info.inlines.addresses.isEmpty)
        #expect(info.lines.lookup(function - libc.bias + 1) != nil)
    }

    @Test func reportsInlinedCallsOfThisBinary() throws {
        // Debug Swift code has inlined calls too: macro expansions (#expect)
        // and "Swift runtime failure" trap frames.
        let file = try #require(MappedFile(path: "/proc/self/exe"))
        let image = try #require(ELFImage(bytes: file.bytes))
        let info = try #require(DebugInfo(image: image))
        let bias = try loadBias(ofMainProgram: DynamicLoader.objects().objects)
        #expect(expectFramesFollowTheTables(info, bias: bias, symbolizer: Symbolizer()) > 0)
    }

    @Test func symbolizesThousandsOfAddressesAndCachesThem() throws {
        let table = try executableSymbols()
        let bias = try loadBias(ofMainProgram: DynamicLoader.objects().objects)
        let entries = table.entries.filter(\.sized).prefix(1000)
        try #require(entries.count >= 500)
        let symbolizer = Symbolizer()
        var named = 0
        var first: [[SymbolizedFrame]] = []
        for entry in entries {
            let frames = symbolizer.frames(at: bias + entry.address + (entry.end - entry.address) / 2)
            if frames.last?.systemName == table.image.cString(at: entry.nameOffset) { named += 1 }
            first.append(frames)
        }
        // Timings are measured by the benchmarks, never asserted here; the
        // cache must answer exactly what the first pass computed.
        let again = entries.map { symbolizer.frames(at: bias + $0.address + ($0.end - $0.address) / 2) }
        #expect(named == entries.count)
        #expect(again == first)
    }
}

// MARK: - DWARF line tables from hand-assembled bytes

/// Little-endian bytes, LEB128 and C strings, as .debug_line spells them.
private struct ByteAssembler {
    var bytes: [UInt8] = []
    var count: Int { bytes.count }

    mutating func u8(_ values: UInt8...) { bytes += values }
    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func string(_ text: String) { bytes += Array(text.utf8) + [0] }

    mutating func uleb(_ value: UInt64) {
        var value = value
        repeat {
            let low = UInt8(value & 0x7f)
            value >>= 7
            bytes.append(value == 0 ? low : low | 0x80)
        } while value != 0
    }

    mutating func sleb(_ value: Int64) {
        var value = value
        while true {
            let low = UInt8(value & 0x7f)
            value >>= 7
            let done = (value == 0 && low & 0x40 == 0) || (value == -1 && low & 0x40 != 0)
            bytes.append(done ? low : low | 0x80)
            if done { return }
        }
    }

    mutating func patch32(at offset: Int, _ value: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    // Line-number program opcodes (line_base -5, line_range 14).
    mutating func setAddress(_ address: UInt64) { u8(0); uleb(9); u8(2); u64(address) }
    mutating func endSequence() { u8(0, 1, 1) }
    mutating func copy() { u8(1) }
    mutating func advancePC(_ delta: UInt64) { u8(2); uleb(delta) }
    mutating func advanceLine(_ delta: Int64) { u8(3); sleb(delta) }
    mutating func setFile(_ file: UInt64) { u8(4); uleb(file) }
    mutating func special(address: Int, line: Int, opcodeBase: Int = 13) {
        u8(UInt8((line + 5) + 14 * address + opcodeBase))
    }
}

private enum Form {
    static let data1: UInt64 = 0x0b, data2: UInt64 = 0x05, data4: UInt64 = 0x06, data8: UInt64 = 0x07
    static let data16: UInt64 = 0x1e, string: UInt64 = 0x08, udata: UInt64 = 0x0f, block: UInt64 = 0x09
    static let strp: UInt64 = 0x0e, lineStrp: UInt64 = 0x1f
}

/// One unit: fixed header fields (min_inst_length 1, max_ops 1, line_base
/// -5, line_range 14), then `tables`, then `program`; lengths patched in.
private func lineUnit(version: UInt16, opcodeBase: UInt8 = 13, extraOpcodeLengths: [UInt8] = [],
                      tables: (inout ByteAssembler) -> Void, program: (inout ByteAssembler) -> Void) -> [UInt8] {
    var a = ByteAssembler()
    a.u32(0)
    a.u16(version)
    if version >= 5 { a.u8(8, 0) } // address_size, segment_selector_size
    let headerLengthOffset = a.count
    a.u32(0)
    let headerStart = a.count
    a.u8(1)
    if version >= 4 { a.u8(1) }
    a.u8(1, UInt8(bitPattern: -5), 14, opcodeBase)
    let standard: [UInt8] = [0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1] + extraOpcodeLengths
    a.bytes += standard.prefix(Int(opcodeBase) - 1)
    tables(&a)
    a.patch32(at: headerLengthOffset, UInt32(a.count - headerStart))
    program(&a)
    a.patch32(at: 0, UInt32(a.count - 4))
    return a.bytes
}

/// A DWARF 4 unit using every standard opcode, an unknown standard opcode
/// (13, two operands), define_file, set_discriminator, two sequences.
private let version4Unit = lineUnit(version: 4, opcodeBase: 14, extraOpcodeLengths: [2]) { a in
    a.string("/src"); a.string("lib"); a.u8(0)                       // include_directories
    a.string("main.c"); a.uleb(1); a.uleb(0); a.uleb(0)              // file 1: /src/main.c
    a.string("/abs/other.h"); a.uleb(0); a.uleb(0); a.uleb(0)        // file 2: absolute
    a.string("util.c"); a.uleb(2); a.uleb(0); a.uleb(0)              // file 3: lib/util.c
    a.u8(0)
} program: { a in
    a.setAddress(0x1000)
    a.advanceLine(9); a.copy()                                       // 0x1000 main.c:10
    a.special(address: 4, line: 1, opcodeBase: 14)                   // 0x1004 main.c:11
    a.setFile(2); a.advancePC(8); a.advanceLine(-6); a.copy()        // 0x100c other.h:5
    a.u8(6); a.u8(5); a.uleb(7); a.u8(10, 11); a.u8(12); a.uleb(3); a.u8(7) // flags, column, isa
    a.u8(13); a.uleb(300); a.uleb(5)                                 // unknown opcode: skipped
    a.u8(8)                                                          // const_add_pc: +17
    a.u8(0, 2, 4, 4)                                                 // set_discriminator 4
    a.setFile(1); a.advanceLine(2); a.copy()                         // 0x101d main.c:7
    a.u8(9); a.u16(0x10)                                             // fixed_advance_pc
    a.u8(0); a.uleb(10); a.u8(3); a.string("gen.c"); a.uleb(1); a.uleb(0); a.uleb(0) // define_file 4
    a.setFile(4); a.copy()                                           // 0x102d /src/gen.c:7
    a.setFile(3); a.special(address: 2, line: 0, opcodeBase: 14)     // 0x102f lib/util.c:7 ...
    a.advanceLine(1); a.copy()                                       // ... replaced: lib/util.c:8
    a.advancePC(1); a.endSequence()                                  // ends at 0x1030
    a.setAddress(0x2000); a.copy(); a.advancePC(0x10); a.endSequence() // 0x2000 main.c:1
}

/// A DWARF 5 unit: strings through .debug_line_str and .debug_str, and
/// data1, data16, udata and block fields; file 0 is the primary file.
private let version5Strings: (lineStr: [UInt8], str: [UInt8]) = (
    Array("/work/proj\0include\0".utf8), Array("xx\0main.swift\0util.h\0".utf8))

private let version5Unit = lineUnit(version: 5) { a in
    a.u8(1); a.uleb(1); a.uleb(Form.lineStrp)                        // directory format: path
    a.uleb(2); a.u32(0); a.u32(11)                                   // /work/proj, include
    a.u8(5)
    a.uleb(1); a.uleb(Form.strp); a.uleb(2); a.uleb(Form.data1)      // path, directory index
    a.uleb(5); a.uleb(Form.data16); a.uleb(4); a.uleb(Form.udata)    // MD5, size
    a.uleb(0x2001); a.uleb(Form.block)                               // vendor content
    a.uleb(2)
    a.u32(3); a.u8(0); a.bytes += [UInt8](repeating: 0xab, count: 16); a.uleb(1234); a.uleb(2); a.u8(1, 2)
    a.u32(14); a.u8(1); a.bytes += [UInt8](repeating: 0xcd, count: 16); a.uleb(99); a.uleb(0)
} program: { a in
    a.setFile(0); a.setAddress(0x3000); a.advanceLine(41); a.copy()  // 0x3000 main.swift:42
    a.setFile(1); a.special(address: 3, line: 1)                     // 0x3003 include/util.h:43
    a.advancePC(5); a.endSequence()                                  // ends at 0x3008
    a.setAddress(0); a.copy(); a.advancePC(4); a.endSequence()       // discarded function at 0
}

/// A DWARF 5 unit with inline strings and data2/4/8 fields.
private let version5InlineUnit = lineUnit(version: 5) { a in
    a.u8(1); a.uleb(1); a.uleb(Form.string)
    a.uleb(1); a.string("/abs")
    a.u8(4)
    a.uleb(1); a.uleb(Form.string); a.uleb(2); a.uleb(Form.data2)
    a.uleb(3); a.uleb(Form.data4); a.uleb(4); a.uleb(Form.data8)
    a.uleb(2)
    a.string("a.c"); a.u16(0); a.u32(7); a.u64(8)
    a.string("/elsewhere/b.c"); a.u16(0); a.u32(7); a.u64(8)
} program: { a in
    a.setAddress(0x4000); a.setFile(1); a.copy()                     // 0x4000 /elsewhere/b.c:1
    a.advancePC(2); a.setFile(0); a.advanceLine(1); a.copy()         // 0x4002 /abs/a.c:2
    a.advancePC(2); a.endSequence()
}

private func lineTable(_ line: [UInt8], lineStr: [UInt8] = [], str: [UInt8] = [],
                       keep: (UInt64) -> Bool = { _ in true }) -> LineTable {
    line.withUnsafeBytes { line in
        lineStr.withUnsafeBytes { lineStr in
            str.withUnsafeBytes { str in
                LineTable(sections: DWARFLineSections(line: line, lineStr: lineStr, str: str), keepSequence: keep)
            }
        }
    }
}

private func describe(_ table: LineTable, _ address: UInt64) -> String {
    table.lookup(address).map { "\($0.file):\($0.line)" } ?? "-"
}

/// Sorted strictly by address, every file index valid, a gap row last.
private func expectWellFormed(_ table: LineTable) {
    #expect(zip(table.addresses, table.addresses.dropFirst()).allSatisfy { $0 < $1 })
    #expect(table.files.allSatisfy { $0 == LineTable.gap || Int($0) < table.paths.count })
    #expect(table.files.last == nil || table.files.last == LineTable.gap)
    #expect(table.addresses.count == table.files.count && table.files.count == table.lines.count)
}

@Suite struct SymbolizerLineTableTests {
    @Test func runsADWARF4Program() {
        let table = lineTable(version4Unit)
        expectWellFormed(table)
        let expected: [(UInt64, String)] = [
            (0x0fff, "-"), (0x1000, "/src/main.c:10"), (0x1003, "/src/main.c:10"), (0x1004, "/src/main.c:11"),
            (0x100b, "/src/main.c:11"), (0x100c, "/abs/other.h:5"), (0x101c, "/abs/other.h:5"),
            (0x101d, "/src/main.c:7"), (0x102c, "/src/main.c:7"), (0x102d, "/src/gen.c:7"), (0x102e, "/src/gen.c:7"),
            (0x102f, "lib/util.c:8"), (0x1030, "-"), (0x1fff, "-"), (0x2000, "/src/main.c:1"),
            (0x200f, "/src/main.c:1"), (0x2010, "-"), (.max, "-"), (0, "-"),
        ]
        for (address, location) in expected {
            #expect(describe(table, address) == location, "at 0x\(String(address, radix: 16))")
        }
        #expect(table.addresses == [0x1000, 0x1004, 0x100c, 0x101d, 0x102d, 0x102f, 0x1030, 0x2000, 0x2010])
        #expect(Set(table.paths) == ["/src/main.c", "/abs/other.h", "/src/gen.c", "lib/util.c"])
    }

    @Test func runsDWARF5ProgramsAndSortsUnits() {
        let table = lineTable(version5InlineUnit + version5Unit + version4Unit,
                              lineStr: version5Strings.lineStr, str: version5Strings.str, keep: { $0 != 0 })
        expectWellFormed(table)
        #expect(describe(table, 0x3000) == "/work/proj/main.swift:42")
        #expect(describe(table, 0x3002) == "/work/proj/main.swift:42")
        #expect(describe(table, 0x3003) == "/work/proj/include/util.h:43")
        #expect(describe(table, 0x3007) == "/work/proj/include/util.h:43")
        #expect(describe(table, 0x3008) == "-")
        #expect(describe(table, 0x4000) == "/elsewhere/b.c:1")
        #expect(describe(table, 0x4002) == "/abs/a.c:2")
        #expect(describe(table, 0x4004) == "-")
        #expect(describe(table, 0x1004) == "/src/main.c:11")
        // The sequence at address 0 was dropped by `keep`.
        #expect(describe(table, 0) == "-" && describe(table, 2) == "-")
        #expect(table.addresses.first == 0x1000)
        // Without the filter it stays (with the initial file register, 1).
        #expect(describe(lineTable(version5Unit, lineStr: version5Strings.lineStr, str: version5Strings.str), 2)
                == "/work/proj/include/util.h:1")
    }

    @Test func truncatedSectionsGiveNoRows() {
        for length in 0..<version4Unit.count {
            let table = lineTable(Array(version4Unit.prefix(length)))
            #expect(table.rowCount == 0, "prefix of \(length) bytes")
        }
        // A truncated unit after a good one loses only itself.
        let table = lineTable(version4Unit + version4Unit.prefix(40))
        #expect(table.rowCount == 9 && describe(table, 0x1000) == "/src/main.c:10")
    }

    @Test func malformedHeadersAndProgramsGiveNoRows() {
        func unit(version: UInt16 = 4, lineRange: UInt8? = nil, program: (inout ByteAssembler) -> Void) -> [UInt8] {
            var bytes = lineUnit(version: version, tables: { $0.u8(0); $0.string("f.c"); $0.u8(0, 0, 0); $0.u8(0) },
                                 program: program)
            if let lineRange { bytes[version >= 4 ? 14 : 13] = lineRange }
            return bytes
        }
        let good: (inout ByteAssembler) -> Void = { $0.setAddress(0x10); $0.copy(); $0.advancePC(1); $0.endSequence() }
        #expect(lineTable(unit(program: good)).rowCount == 2)
        #expect(lineTable(unit(version: 3, program: good)).rowCount == 2)
        #expect(lineTable(unit(version: 2, program: good)).rowCount == 2)
        #expect(lineTable(unit(version: 1, program: good)).rowCount == 0)
        #expect(lineTable(unit(version: 6, program: good)).rowCount == 0)
        #expect(lineTable(unit(lineRange: 0, program: good)).rowCount == 0)
        // No end_sequence: the rows have no end.
        #expect(lineTable(unit { $0.setAddress(0x10); $0.copy(); $0.advancePC(1) }).rowCount == 0)
        // An extended opcode longer than the unit.
        #expect(lineTable(unit { $0.setAddress(0x10); $0.copy(); $0.u8(0); $0.uleb(1000); $0.u8(1) }).rowCount == 0)
        // Addresses going backwards within a sequence.
        #expect(lineTable(unit { $0.setAddress(0x10); $0.copy(); $0.setAddress(0x8); $0.copy(); $0.advancePC(1); $0.endSequence() })
                .rowCount == 0)
        // header_length past the unit's end.
        var bytes = unit(program: good)
        bytes[6] = 0xff
        #expect(lineTable(bytes).rowCount == 0)
        // A unit length past the section's end.
        bytes = unit(program: good)
        bytes[0] &+= 1
        #expect(lineTable(bytes).rowCount == 0)
    }

    @Test func corruptedBytesNeverCrash() {
        var corrupted = 0
        for index in version4Unit.indices {
            for value: UInt8 in [0x00, 0xff, 0x80, version4Unit[index] ^ 0x01] {
                var bytes = version4Unit
                bytes[index] = value
                let table = lineTable(bytes)
                expectWellFormed(table)
                for address: UInt64 in [0, 0x1000, 0x1010, 0x2000, .max] { _ = table.lookup(address) }
                corrupted += 1
            }
        }
        #expect(corrupted == version4Unit.count * 4)
    }

    @Test func randomBytesNeverCrash() {
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let header = Array(version4Unit.prefix(through: 9 + Int(version4Unit[6])))
        for round in 0..<600 {
            let count = Int(next() % 400)
            var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
            if round % 2 == 0 {
                // A valid header followed by a random program.
                bytes = header + bytes
                let length = UInt32(bytes.count - 4)
                for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
            }
            let table = lineTable(bytes)
            expectWellFormed(table)
            _ = table.lookup(next())
        }
    }
}

// MARK: - DWARF inlined calls from hand-assembled bytes

/// Copies byte arrays to raw buffers that stay put for `body`.
private func withBuffers<R>(_ arrays: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) -> R) -> R {
    let buffers = arrays.map { array in
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: array.count, alignment: 8)
        buffer.copyBytes(from: array)
        return buffer
    }
    defer { buffers.forEach { $0.deallocate() } }
    return body(buffers.map { UnsafeRawBufferPointer($0) })
}

private struct InfoSections {
    var info: [UInt8] = [], abbrev: [UInt8] = [], line: [UInt8] = [], lineStr: [UInt8] = [], str: [UInt8] = []
    var strOffsets: [UInt8] = [], addr: [UInt8] = [], ranges: [UInt8] = [], rnglists: [UInt8] = []

    func inlineTable() -> InlineTable {
        withBuffers([info, abbrev, line, lineStr, str, strOffsets, addr, ranges, rnglists]) { b in
            let sections = DWARFInfoSections(info: b[0], abbrev: b[1], str: b[4], lineStr: b[3], strOffsets: b[5],
                                             addr: b[6], ranges: b[7], rnglists: b[8])
            return InlineTable(sections: sections, units: DWARFUnit.units(in: sections),
                               lineSections: DWARFLineSections(line: b[2], lineStr: b[3], str: b[4]))
        }
    }

    /// The units the per-unit index (both kinds) places at `addresses`.
    func indexedUnits(at addresses: [UInt64]) -> [[UInt32]] {
        withBuffers([info, abbrev, line, lineStr, str, strOffsets, addr, ranges, rnglists]) { b in
            let sections = DWARFInfoSections(info: b[0], abbrev: b[1], str: b[4], lineStr: b[3], strOffsets: b[5],
                                             addr: b[6], ranges: b[7], rnglists: b[8])
            let line = DWARFLineSections(line: b[2], lineStr: b[3], str: b[4])
            let byUnits = DWARFUnitIndex(info: sections, line: line) { _ in true }
            let byPrograms = DWARFUnitIndex(programsIn: line) { _ in true }
            return addresses.map { byUnits.units(containing: $0) + byPrograms.units(containing: $0) }
        }
    }
}

private enum Attr {
    static let name: UInt64 = 0x03, stmtList: UInt64 = 0x10, lowPC: UInt64 = 0x11, highPC: UInt64 = 0x12
    static let compDir: UInt64 = 0x1b, abstractOrigin: UInt64 = 0x31, ranges: UInt64 = 0x55
    static let callFile: UInt64 = 0x58, callLine: UInt64 = 0x59, linkageName: UInt64 = 0x6e
    static let strOffsetsBase: UInt64 = 0x72, addrBase: UInt64 = 0x73, rnglistsBase: UInt64 = 0x74
}

private enum InfoForm {
    static let addr: UInt64 = 0x01, data1: UInt64 = 0x0b, data2: UInt64 = 0x05, data4: UInt64 = 0x06
    static let string: UInt64 = 0x08, udata: UInt64 = 0x0f, ref4: UInt64 = 0x13, secOffset: UInt64 = 0x17
    static let addrx: UInt64 = 0x1b, implicitConst: UInt64 = 0x21, rnglistx: UInt64 = 0x23, strx1: UInt64 = 0x25
    static let addrx1: UInt64 = 0x29
}

extension ByteAssembler {
    /// An abbreviation declaration.
    fileprivate mutating func abbreviation(_ code: UInt64, tag: UInt64, children: Bool, _ specs: [(UInt64, UInt64)],
                                           implicit: Int64 = 0) {
        uleb(code); uleb(tag); u8(children ? 1 : 0)
        for (name, form) in specs {
            uleb(name); uleb(form)
            if form == InfoForm.implicitConst { sleb(implicit) }
        }
        u8(0, 0)
    }
}

/// A DWARF 4 unit: an inlined Swift function (DW_AT_low_pc/high_pc) with
/// a C function inlined into it through a lexical block (DW_AT_ranges in
/// .debug_ranges), another inlined call whose range list changes the base
/// address, and call files from a DWARF 4 line table relative to DW_AT_comp_dir.
private func version4Info() -> InfoSections {
    var sections = InfoSections()
    var abbrev = ByteAssembler()
    abbrev.abbreviation(1, tag: 0x11, children: true,
                        [(Attr.stmtList, InfoForm.secOffset), (Attr.compDir, InfoForm.string), (Attr.lowPC, InfoForm.addr)])
    abbrev.abbreviation(2, tag: 0x2e, children: false, [(Attr.linkageName, InfoForm.string), (Attr.name, InfoForm.string)])
    abbrev.abbreviation(3, tag: 0x2e, children: true, [(Attr.lowPC, InfoForm.addr), (Attr.highPC, InfoForm.data4)])
    abbrev.abbreviation(4, tag: 0x1d, children: true,
                        [(Attr.abstractOrigin, InfoForm.ref4), (Attr.lowPC, InfoForm.addr), (Attr.highPC, InfoForm.data4),
                         (Attr.callFile, InfoForm.data1), (Attr.callLine, InfoForm.udata)])
    abbrev.abbreviation(5, tag: 0x1d, children: false,
                        [(Attr.abstractOrigin, InfoForm.ref4), (Attr.ranges, InfoForm.secOffset),
                         (Attr.callFile, InfoForm.data1), (Attr.callLine, InfoForm.data2)])
    abbrev.abbreviation(6, tag: 0x2e, children: false, [(Attr.name, InfoForm.string)])
    abbrev.abbreviation(7, tag: 0x0b, children: true, [])
    abbrev.u8(0)
    sections.abbrev = abbrev.bytes

    var info = ByteAssembler()
    info.u32(0); info.u16(4); info.u32(0); info.u8(8)
    info.uleb(1); info.u32(0); info.string("/comp"); info.u64(0)
    let inner = info.count
    info.uleb(2); info.string("$s4Demo5inneryyF"); info.string("inner")
    let helper = info.count
    info.uleb(6); info.string("helper")
    info.uleb(3); info.u64(0x1000); info.u32(0x100)
    info.uleb(4); info.u32(UInt32(inner)); info.u64(0x1010); info.u32(0x40); info.u8(1); info.uleb(12)
    info.uleb(7)
    info.uleb(5); info.u32(UInt32(helper)); info.u32(0); info.u8(2); info.u16(300)
    info.u8(0) // end of the lexical block
    info.u8(0) // end of the inlined call
    info.uleb(5); info.u32(UInt32(helper)); info.u32(48); info.u8(1); info.u16(20)
    info.u8(0) // end of the subprogram
    info.u8(0) // end of the unit
    info.patch32(at: 0, UInt32(info.count - 4))
    sections.info = info.bytes

    var ranges = ByteAssembler()
    ranges.u64(0x1020); ranges.u64(0x1028); ranges.u64(0x1030); ranges.u64(0x1038); ranges.u64(0); ranges.u64(0)
    ranges.u64(.max); ranges.u64(0x1000); ranges.u64(0x80); ranges.u64(0x90); ranges.u64(0); ranges.u64(0)
    sections.ranges = ranges.bytes

    sections.line = lineUnit(version: 4) { a in
        a.string("src"); a.u8(0)
        a.string("main.swift"); a.uleb(1); a.uleb(0); a.uleb(0)
        a.string("/abs/helper.h"); a.uleb(0); a.uleb(0); a.uleb(0)
        a.u8(0)
    } program: { _ in }
    return sections
}

/// A DWARF 5 unit: names through strx1 and .debug_str_offsets, addresses
/// through addrx/addrx1 and .debug_addr, DW_FORM_rnglistx into
/// .debug_rnglists, an implicit_const call file; files from a DWARF 5 line table.
private func version5Info() -> InfoSections {
    var sections = InfoSections()
    var abbrev = ByteAssembler()
    abbrev.u8(0) // an empty table first, so the unit's abbrev offset is not 0
    let abbrevOffset = abbrev.count
    abbrev.abbreviation(1, tag: 0x11, children: true,
                        [(Attr.strOffsetsBase, InfoForm.secOffset), (Attr.addrBase, InfoForm.secOffset),
                         (Attr.lowPC, InfoForm.addrx), (Attr.rnglistsBase, InfoForm.secOffset),
                         (Attr.stmtList, InfoForm.secOffset)])
    abbrev.abbreviation(2, tag: 0x2e, children: false, [(Attr.linkageName, InfoForm.strx1)])
    abbrev.abbreviation(3, tag: 0x1d, children: false,
                        [(Attr.abstractOrigin, InfoForm.ref4), (Attr.ranges, InfoForm.rnglistx),
                         (Attr.callFile, InfoForm.data1), (Attr.callLine, InfoForm.data1)])
    abbrev.abbreviation(4, tag: 0x1d, children: false,
                        [(Attr.abstractOrigin, InfoForm.ref4), (Attr.lowPC, InfoForm.addrx1), (Attr.highPC, InfoForm.data1),
                         (Attr.callFile, InfoForm.implicitConst), (Attr.callLine, InfoForm.data1)], implicit: 1)
    abbrev.u8(0)
    sections.abbrev = abbrev.bytes

    sections.str = version5Strings.str + Array("$s4Demo4leafyyF\0".utf8)
    sections.lineStr = version5Strings.lineStr
    sections.line = version5Unit

    var offsets = ByteAssembler()
    offsets.u32(8); offsets.u16(5); offsets.u16(0); offsets.u32(UInt32(version5Strings.str.count))
    sections.strOffsets = offsets.bytes
    var addr = ByteAssembler()
    addr.u32(20); addr.u16(5); addr.u8(8, 0); addr.u64(0x5000); addr.u64(0x5100)
    sections.addr = addr.bytes
    var rnglists = ByteAssembler()
    rnglists.u32(0); rnglists.u16(5); rnglists.u8(8, 0); rnglists.u32(1)
    rnglists.u32(4)                                          // list 0, relative to the base (12)
    rnglists.u8(4); rnglists.uleb(0x10); rnglists.uleb(0x20) // offset_pair from the unit's low_pc
    rnglists.u8(1); rnglists.uleb(1)                         // base_addressx: 0x5100
    rnglists.u8(4); rnglists.uleb(0x40); rnglists.uleb(0x48)
    rnglists.u8(0)
    rnglists.patch32(at: 0, UInt32(rnglists.count - 4))
    sections.rnglists = rnglists.bytes

    var info = ByteAssembler()
    info.u32(0); info.u16(5); info.u8(1, 8); info.u32(UInt32(abbrevOffset))
    info.uleb(1); info.u32(8); info.u32(8); info.uleb(0); info.u32(12); info.u32(0)
    let leaf = info.count
    info.uleb(2); info.u8(0)
    info.uleb(3); info.u32(UInt32(leaf)); info.uleb(0); info.u8(0); info.u8(7)
    info.uleb(4); info.u32(UInt32(leaf)); info.u8(1); info.u8(0x10); info.u8(9)
    info.u8(0)
    info.patch32(at: 0, UInt32(info.count - 4))
    sections.info = info.bytes
    return sections
}

private func describe(_ table: InlineTable, _ address: UInt64) -> String {
    table.lookup(address).map { "\($0.systemName)@\($0.callFile):\($0.callLine)" }.joined(separator: " < ")
}

/// Boundaries strictly increasing, every node index valid, nothing in effect after the last.
private func expectWellFormed(_ table: InlineTable) {
    #expect(zip(table.addresses, table.addresses.dropFirst()).allSatisfy { $0 < $1 })
    #expect(table.innermost.allSatisfy { $0 == InlineTable.none || Int($0) < table.nodes.count })
    #expect(table.innermost.last == nil || table.innermost.last == InlineTable.none)
    for (index, node) in table.nodes.enumerated() {
        #expect(node.parent == InlineTable.none || Int(node.parent) < index)
        #expect(Int(node.name) < table.names.count && Int(node.callFile) < table.paths.count)
    }
}

@Suite struct SymbolizerInlineTableTests {
    @Test func readsDWARF4InlinedCalls() {
        let table = version4Info().inlineTable()
        expectWellFormed(table)
        let inner = "$s4Demo5inneryyF@/comp/src/main.swift:12"
        let expected: [(UInt64, String)] = [
            (0x1000, ""), (0x100f, ""), (0x1010, inner), (0x101f, inner),
            (0x1020, "helper@/abs/helper.h:300 < " + inner), (0x1027, "helper@/abs/helper.h:300 < " + inner),
            (0x1028, inner), (0x1030, "helper@/abs/helper.h:300 < " + inner), (0x1038, inner), (0x104f, inner),
            (0x1050, ""), (0x1080, "helper@/comp/src/main.swift:20"), (0x108f, "helper@/comp/src/main.swift:20"),
            (0x1090, ""), (0, ""), (.max, ""),
        ]
        for (address, chain) in expected {
            #expect(describe(table, address) == chain, "at 0x\(String(address, radix: 16))")
        }
        let frame = table.lookup(0x1010).first
        #expect(frame?.function == demangleSwiftSymbol("$s4Demo5inneryyF") && frame?.function != frame?.systemName)
        #expect(table.lookup(0x1080).first?.function == "helper")
    }

    @Test func readsDWARF5InlinedCalls() {
        let table = version5Info().inlineTable()
        expectWellFormed(table)
        let fromMain = "$s4Demo4leafyyF@/work/proj/main.swift:7"
        let fromUtil = "$s4Demo4leafyyF@/work/proj/include/util.h:9"
        let expected: [(UInt64, String)] = [
            (0x500f, ""), (0x5010, fromMain), (0x501f, fromMain), (0x5020, ""),
            (0x5100, fromUtil), (0x510f, fromUtil), (0x5110, ""), (0x5140, fromMain), (0x5147, fromMain), (0x5148, ""),
        ]
        for (address, chain) in expected {
            #expect(describe(table, address) == chain, "at 0x\(String(address, radix: 16))")
        }
    }

    @Test func damagedDebugInfoNeverCrashes() {
        for base in [version4Info(), version5Info()] {
            // Truncated .debug_info: the unit is lost, nothing else happens.
            for length in 0..<base.info.count {
                var sections = base
                sections.info = Array(base.info.prefix(length))
                let table = sections.inlineTable()
                expectWellFormed(table)
                #expect(table.boundaryCount == 0, "info prefix of \(length) bytes")
            }
            // Every byte of .debug_info, .debug_abbrev and the range lists damaged in turn.
            for keyPath in [\InfoSections.info, \.abbrev, \.ranges, \.rnglists, \.addr, \.strOffsets] {
                for index in base[keyPath: keyPath].indices {
                    for value: UInt8 in [0x00, 0xff, 0x80, base[keyPath: keyPath][index] ^ 0x01] {
                        var sections = base
                        sections[keyPath: keyPath][index] = value
                        let table = sections.inlineTable()
                        expectWellFormed(table)
                        for address: UInt64 in [0x1010, 0x1020, 0x5010, 0x5100] { _ = table.lookup(address) }
                        // The per-unit index reads the same damaged bytes.
                        _ = sections.indexedUnits(at: [0x1010, 0x1020, 0x5010, 0x5100])
                    }
                }
            }
        }
    }
}
