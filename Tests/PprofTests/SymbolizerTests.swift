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

/// Returns a call address inside itself (return address - 1, as profiles
/// pass them).
@inline(never)
func symbolizationProbe(_ seed: Int) -> UInt64 {
    let backtrace = unsafeBitCast(libcFunction("backtrace")!, to: BacktraceFunction.self)
    var frames = [UnsafeMutableRawPointer?](repeating: nil, count: 4 + (seed & 1))
    _ = backtrace(&frames, 1)
    return UInt64(UInt(bitPattern: frames[0])) - 1
}

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

    @Test func symbolizesThousandsOfAddressesQuickly() throws {
        let table = try executableSymbols()
        let bias = try loadBias(ofMainProgram: DynamicLoader.objects().objects)
        let entries = table.entries.filter(\.sized).prefix(1000)
        try #require(entries.count >= 500)
        let symbolizer = Symbolizer()
        let clock = ContinuousClock()
        var named = 0
        let first = clock.measure {
            for entry in entries {
                let frames = symbolizer.frames(at: bias + entry.address + (entry.end - entry.address) / 2)
                if frames.last?.systemName == table.image.cString(at: entry.nameOffset) { named += 1 }
            }
        }
        let again = clock.measure {
            for entry in entries { _ = symbolizer.frames(at: bias + entry.address + (entry.end - entry.address) / 2) }
        }
        print("symbolized \(entries.count) addresses: first \(first), cached \(again)")
        #expect(named == entries.count)
        #expect(first < .seconds(1))
        #expect(again < first)
    }
}
