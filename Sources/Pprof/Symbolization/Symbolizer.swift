internal import CPprof
import Glibc
import Synchronization

/// Names addresses of this process, in-process, so profiles leave with
/// function names and need no binaries on the reader's side.
///
/// Names come from the ELF symbol tables (.symtab and .dynsym) of each
/// loaded object, read from disk: they name every function, including the
/// local Swift symbols dladdr cannot see.
///
/// Files and lines come from the image's DWARF .debug_line, and inlined
/// calls from its .debug_info (DW_TAG_inlined_subroutine), both indexed per
/// compile unit on the first address that lands in it (`UnitDebugInfo`;
/// per image where the sections are compressed, `DebugInfo`) and then
/// answered by binary search. (The toolchain's Runtime module re-runs every
/// line-number program of the image for each address: tens of milliseconds
/// per address for a real server.) DWARF is read from the image itself or
/// from its separate debug file under /usr/lib/debug/.build-id. Images
/// without it give file "" and line 0; each inlined call adds a frame
/// before the physical function's.
final class Symbolizer: Sendable {
    static let shared = Symbolizer()

    /// An address outside every known object makes the symbolizer look for
    /// newly loaded libraries, but no more often than this.
    let rescanInterval: Duration

    /// Bound on the per-address cache, in (estimated) bytes: a process has
    /// far fewer distinct sampled PCs, but `/symbol` takes any address, and
    /// 200,000 cached addresses cost 150 MB. When full, it starts over.
    static let maxCachedBytes = 4 << 20

    /// Internal for the read-ahead (`Symbolizer+ReadAhead.swift`), which
    /// works on a copy outside the lock and hands its results in.
    let state = Mutex(SymbolizerState())
    private let keptMappings = Mutex<(generation: LoaderGeneration, mappings: [ExecutableMapping])?>(nil)

    init(rescanInterval: Duration = .seconds(1)) {
        self.rescanInterval = rescanInterval
    }

    /// Executable ("x") mappings from /proc/self/maps in file order, the
    /// main executable (/proc/self/exe) first. Kept while the loader's
    /// counts of objects loaded and unloaded stay the same: with 1000
    /// threads the file has thousands of lines (their stacks), and reading
    /// and parsing it was a third of a `/goroutine` request's CPU.
    func executableMappings() -> [ExecutableMapping] {
        let generation = DynamicLoader.generation()
        if let kept = keptMappings.withLock({ $0 }), kept.generation == generation { return kept.mappings }
        let mappings = readExecutableMappings()
        if !mappings.isEmpty { keptMappings.withLock { $0 = (generation, mappings) } }
        return mappings
    }

    private func readExecutableMappings() -> [ExecutableMapping] {
        guard let text = readWholeFile("/proc/self/maps") else { return [] }
        let entries = ProcMapsEntry.parseExecutable(text)
        let executable = mainExecutablePath()
        let mappings = state.withLock { state in
            entries.map { entry in
                ExecutableMapping(start: entry.start, limit: entry.limit, fileOffset: entry.fileOffset,
                                  path: entry.path,
                                  buildID: state.buildID(of: entry, isMainExecutable: entry.path == executable))
            }
        }
        // pprof takes the first mapping for the main binary.
        return mappings.filter { $0.path == executable } + mappings.filter { $0.path != executable }
    }

    /// Frames for an address as given (callers pass return addresses minus
    /// 1), innermost inlined first, the physical function last; [] if
    /// nothing is known.
    func frames(at address: UInt64) -> [SymbolizedFrame] {
        let interval = rescanInterval
        let (frames, loaded) = state.withLock { state in
            defer { state.endBatch() }
            return (state.frames(at: address, rescanInterval: interval), state.takeLoadedTables())
        }
        if loaded { Self.returnFreedMemory() }
        return frames
    }

    /// `frames(at:)` for many addresses, under one acquisition of the lock.
    /// Profiles ask for thousands of addresses; taken once per address, the
    /// lock made concurrent requests convoy (16 clients on 2 cores spent 16%
    /// of the machine's CPU spinning in it).
    func frames(at addresses: [UInt64]) -> [UInt64: [SymbolizedFrame]] {
        let interval = rescanInterval
        let (table, loaded) = state.withLock { state in
            defer { state.endBatch() }
            var table: [UInt64: [SymbolizedFrame]] = [:]
            table.reserveCapacity(addresses.count)
            for address in addresses where table[address] == nil {
                table[address] = state.frames(at: address, rescanInterval: interval)
            }
            return (table, state.takeLoadedTables())
        }
        if loaded { Self.returnFreedMemory() }
        return table
    }

    /// Runs `body` with no inflated debug section let go at the end of a
    /// batch, its own or a concurrent request's: the read-ahead's rehearsal
    /// of a request mostly finds its units read already, and a batch that
    /// reads none of an image's units would free the sections the
    /// read-ahead just inflated, which the first request may still need.
    func holdingInflatedSections<T>(_ body: () -> T) -> T {
        state.withLock { $0.inflatedHolds += 1 }
        defer { state.withLock { $0.inflatedHolds -= 1 } }
        return body()
    }

    /// Reading an object's tables allocates several times what is kept
    /// (candidate lists, builders); freed, that memory would stay in the
    /// allocator's free lists, counted in the process's RSS, for good. After
    /// a load, once per request, hand it back to the kernel.
    static func returnFreedMemory() {
        HeapSampler.ownWork { cpprof_release_free_memory() }
    }

    /// Runtime address ranges of the functions named `symbol` (exactly, as
    /// in the symbol table) in the loaded objects that `accept` selects.
    func functionRanges(named symbol: String, in accept: (LoadedObject) -> Bool) -> [Range<UInt64>] {
        state.withLock { state in
            defer { state.failedNow = [] }
            if state.generation == nil || DynamicLoader.generation() != state.generation { state.scan() }
            var ranges: [Range<UInt64>] = []
            for object in state.objects where accept(object) {
                guard let table = state.symbols(of: object) else { continue }
                ranges += table.ranges(named: symbol).map { ($0.lowerBound &+ object.bias)..<($0.upperBound &+ object.bias) }
            }
            return ranges
        }
    }

    /// What the loaded tables and the cache hold now, in bytes.
    var memoryUsage: SymbolizerMemory {
        state.withLock { state in
            var usage = SymbolizerMemory(cache: state.frameCacheBytes)
            for case let table? in state.symbolTables.values { usage.symbols += table.memoryBytes }
            for info in state.debugInfo.values {
                let bytes = info.memoryBytes
                usage.lines += bytes.lines
                usage.inlines += bytes.inlines
            }
            return usage
        }
    }

    /// How often the loaded objects were listed (for tests of the rate limit).
    var scanCount: Int { state.withLock { $0.scanCount } }

    /// Addresses cached now, and their estimated bytes (for tests).
    var cacheUsage: (addresses: Int, bytes: Int) { state.withLock { ($0.frameCache.count, $0.frameCacheBytes) } }
}

/// What reading one object's symbols gave.
struct LoadedSymbols {
    var table: FunctionSymbolTable?
    /// The table came from the object's separate debug file (its DWARF too).
    var fromDebugFile: Bool
    /// The read failed for a reason that may pass: not to be cached.
    var transientFailure: Bool
}

/// Identifies a file version for the build-id cache.
struct FileKey: Hashable {
    var path: String
    var device: String
    var inode: UInt64
}

/// What `Symbolizer` keeps, under its lock.
struct SymbolizerState {
    var objects: [LoadedObject] = []
    /// Symbol tables, loaded on an object's first address and kept for the
    /// process's life; nil where the file could not be read. A failure that
    /// may pass (EMFILE, ENOMEM) is not kept: the next lookup tries again.
    var symbolTables: [LoadedObject: FunctionSymbolTable?] = [:]
    /// Line and inline tables, built from the same file on an object's
    /// first address (per compile unit where they can be:
    /// `ImageDebugInfo`); `.empty` where it has no DWARF.
    var debugInfo: [LoadedObject: ImageDebugInfo] = [:]
    /// Objects whose symbols came from a separate debug file.
    var symbolsFromDebugFile: Set<LoadedObject> = []
    /// Objects that failed to load for a reason that may pass, during the
    /// lookups under this acquisition of the lock: not tried again for
    /// each address of a batch (each try maps the file again).
    var failedNow: Set<LoadedObject> = []
    var generation: LoaderGeneration?
    var lastScan: ContinuousClock.Instant?
    var frameCache: [UInt64: [SymbolizedFrame]] = [:]
    var frameCacheBytes = 0
    var buildIDs: [FileKey: String] = [:]
    var scanCount = 0
    /// Lookups that met a failure that may pass; their results are not cached.
    var transientFailures = 0
    /// Tables were read since the last `takeLoadedTables()`.
    var loadedTables = false

    /// Objects whose DWARF tables hold inflated sections.
    var inflatedHeld: Set<LoadedObject> = []
    /// While above 0, no batch lets go of them (`Symbolizer.holdingInflatedSections`).
    var inflatedHolds = 0
    /// Objects that read DWARF units under this acquisition of the lock.
    var readNow: Set<LoadedObject> = []

    /// After the lookups under one acquisition of the lock: failures may
    /// be retried; inflated debug sections of objects this batch read no
    /// unit of are freed (the others are likely needed again soon: the
    /// stacks of the first few requests keep bringing new units).
    mutating func endBatch() {
        failedNow = []
        for object in inflatedHeld where !readNow.contains(object) && inflatedHolds == 0 {
            debugInfo[object]?.releaseInflatedSections()
            inflatedHeld.remove(object)
        }
        readNow = []
    }

    mutating func takeLoadedTables() -> Bool {
        defer { loadedTables = false }
        return loadedTables
    }

    mutating func frames(at address: UInt64, rescanInterval: Duration) -> [SymbolizedFrame] {
        if let cached = frameCache[address] { return cached }
        guard let object = object(containing: address, rescanInterval: rescanInterval) else {
            // Not cached: a library loaded later may yet cover it.
            return []
        }
        let failuresBefore = transientFailures
        let frames = symbolize(address, in: object)
        guard transientFailures == failuresBefore else { return frames }
        cache(frames, at: address)
        return frames
    }

    /// Caches an address's frames, starting over when the cache is full.
    mutating func cache(_ frames: [SymbolizedFrame], at address: UInt64) {
        let bytes = Self.estimatedBytes(frames)
        if frameCacheBytes + bytes > Symbolizer.maxCachedBytes {
            frameCache = [:]  // a fresh dictionary: the old storage is freed
            frameCacheBytes = 0
        }
        frameCache[address] = frames
        frameCacheBytes += bytes
    }

    /// What a cache entry costs: the dictionary slot, the array, and per
    /// frame its fields and the strings' heap storage.
    static func estimatedBytes(_ frames: [SymbolizedFrame]) -> Int {
        frames.reduce(64) { total, frame in
            total + MemoryLayout<SymbolizedFrame>.stride + 48
                + frame.function.utf8.count + frame.systemName.utf8.count + frame.file.utf8.count
        }
    }

    /// The loaded object covering `address`. Scans the loader's list the
    /// first time, and again on a miss (a library may have been dlopen'ed),
    /// at most once per `rescanInterval`, and only if the loader's
    /// add/remove counters moved.
    mutating func object(containing address: UInt64, rescanInterval: Duration) -> LoadedObject? {
        if generation == nil { scan() }
        if let object = objects.first(where: { $0.contains(address) }) { return object }
        let now = ContinuousClock.now
        if let lastScan, now - lastScan < rescanInterval { return nil }
        lastScan = now
        guard DynamicLoader.generation() != generation else { return nil }
        scan()
        return objects.first { $0.contains(address) }
    }

    mutating func scan() {
        let (objects, newGeneration) = DynamicLoader.objects()
        scanCount += 1
        self.objects = objects
        if generation != nil {
            // Objects came or went: cached results for reused addresses may be stale.
            frameCache = [:]
            frameCacheBytes = 0
        }
        generation = newGeneration
        lastScan = ContinuousClock.now
    }

    mutating func symbols(of object: LoadedObject) -> FunctionSymbolTable? {
        if let known = symbolTables[object] { return known }
        if failedNow.contains(object) {
            transientFailures += 1
            return nil
        }
        let loaded = Self.loadSymbols(of: object)
        remember(loaded, of: object)
        loadedTables = true
        return loaded.table
    }

    /// Caches what was read, unless it failed for a reason that may pass
    /// (descriptors, memory): then the next request reads the file again.
    mutating func remember(_ loaded: LoadedSymbols, of object: LoadedObject) {
        if loaded.transientFailure {
            transientFailures += 1  // this time the exported names only, if any
            failedNow.insert(object)
            return
        }
        symbolTables[object] = .some(loaded.table)
        if loaded.fromDebugFile { symbolsFromDebugFile.insert(object) }
    }

    /// Reads an object's symbol table. Static: the read-ahead calls it
    /// outside the lock.
    static func loadSymbols(of object: LoadedObject) -> LoadedSymbols {
        var transient = false
        if let file = MappedFile(path: object.openPath, transientFailure: &transient),
           let elf = ELFImage(bytes: file.bytes) {
            // Tables grow with the file; without the memory, read it later.
            guard MemoryHeadroom.isAvailable(file.bytes.count) else {
                return LoadedSymbols(table: nil, fromDebugFile: false, transientFailure: true)
            }
            // A file replaced on disk since it was loaded would give wrong names.
            let fileID = elf.buildID
            if object.buildID.isEmpty || fileID.isEmpty || fileID == object.buildID {
                // Stripped (system libraries): the separate debug file's .symtab
                // names the local functions .dynsym lacks (start_thread, clone3).
                if !elf.hasFullSymbolTable,
                   let debug = SeparateDebugFile(for: elf, path: object.name, buildID: object.buildID,
                                                 transientFailure: &transient) {
                    return LoadedSymbols(table: FunctionSymbolTable(image: debug.image, file: debug.file),
                                         fromDebugFile: true, transientFailure: false)
                }
                return LoadedSymbols(table: FunctionSymbolTable(image: elf, file: file),
                                     fromDebugFile: false, transientFailure: transient)
            }
        }
        if let memory = object.memoryImage, !MemoryHeadroom.isAvailable(Int(clamping: memory.count)) {
            return LoadedSymbols(table: nil, fromDebugFile: false, transientFailure: true)
        }
        if let memory = object.memoryImage, let start = UnsafeRawPointer(bitPattern: UInt(memory.start)),
           let elf = ELFImage(bytes: UnsafeRawBufferPointer(start: start, count: Int(memory.count))) {
            return LoadedSymbols(table: FunctionSymbolTable(image: elf, file: nil), fromDebugFile: false,
                                 transientFailure: transient)
        }
        return LoadedSymbols(table: nil, fromDebugFile: false, transientFailure: transient)
    }

    /// File, line and inlined calls (innermost first) at an ELF virtual
    /// address of `object`, reading its DWARF on first need.
    mutating func debugLookup(_ address: UInt64, in object: LoadedObject, symbols: FunctionSymbolTable)
        -> (location: (file: String, line: Int)?, inlines: [InlineTable.Frame]) {
        guard debugInfo[object] == nil else {
            let unitsBefore = debugInfo[object]?.unitsRead ?? 0
            let found = debugInfo[object]?.lookup(address) ?? (nil, [])
            if debugInfo[object]?.unitsRead ?? 0 != unitsBefore {
                loadedTables = true
                readNow.insert(object)
            }
            if debugInfo[object]?.holdsInflatedSections == true { inflatedHeld.insert(object) }
            return found
        }
        if failedNow.contains(object) {
            transientFailures += 1
            return (nil, [])
        }
        loadedTables = true
        var transient = false
        var info = Self.loadDebugInfo(of: object, symbols: symbols,
                                      fromDebugFile: symbolsFromDebugFile.contains(object), transientFailure: &transient)
        let found = info.lookup(address)
        // Symbols from the loaded image (the file could not be mapped this time) have no DWARF.
        if transient || symbolTables[object] == nil {
            transientFailures += 1
            failedNow.insert(object)
        } else {
            debugInfo[object] = info
            readNow.insert(object)
            if info.holdsInflatedSections { inflatedHeld.insert(object) }
        }
        return found
    }

    /// Prepares an object's DWARF tables: per compile unit where they can
    /// be read in place, else whole (static, for the read-ahead).
    static func loadDebugInfo(of object: LoadedObject, symbols: FunctionSymbolTable, fromDebugFile: Bool,
                              transientFailure: inout Bool) -> ImageDebugInfo {
        guard MemoryHeadroom.isAvailable(symbols.image.bytes.count) else {
            transientFailure = true
            return .empty
        }
        let source = DWARFSource(image: symbols.image, file: symbols.file, linesOnly: fromDebugFile)
        if fromDebugFile { return ImageDebugInfo(source: source) ?? .empty }
        return ImageDebugInfo(source: source)
            ?? separateDebugInfo(of: object, image: symbols.image, transientFailure: &transientFailure) ?? .empty
    }

    /// DWARF from a separate debug file (`SeparateDebugFile`) of an image
    /// that has its own .symtab; files and lines only, no inlined frames:
    /// system libraries' .debug_info is large, and their inlining matters
    /// little here.
    static func separateDebugInfo(of object: LoadedObject, image: ELFImage, transientFailure: inout Bool) -> ImageDebugInfo? {
        guard let debug = SeparateDebugFile(for: image, path: object.name, buildID: object.buildID,
                                            transientFailure: &transientFailure) else { return nil }
        return ImageDebugInfo(source: DWARFSource(image: debug.image, file: debug.file, linesOnly: true))
    }

    /// The physical function's frame, preceded by one frame per inlined call
    /// around the address (innermost first). The innermost frame gets the
    /// line table's file and line; each outer one the call site of the
    /// function it inlined.
    mutating func symbolize(_ address: UInt64, in object: LoadedObject) -> [SymbolizedFrame] {
        guard let table = symbols(of: object) else { return [] }
        let fileAddress = address &- object.bias
        guard let symbol = table.lookup(fileAddress) else { return [] }
        let (location, inlines) = debugLookup(fileAddress, in: object, symbols: table)
        var file = location?.file ?? "", line = location?.line ?? 0
        var frames: [SymbolizedFrame] = []
        for call in inlines {
            frames.append(SymbolizedFrame(function: call.function, systemName: call.systemName,
                                          file: file, line: line, entry: 0))
            file = call.callFile
            line = call.callLine
        }
        frames.append(SymbolizedFrame(function: logicalAsyncName(demangleSwiftSymbol(symbol.name)), systemName: symbol.name,
                                      file: file, line: line, entry: symbol.address &+ object.bias))
        return frames
    }

    /// Build id of a mapped file, read once per file version. Falls back to
    /// the loaded image's own note when the file cannot be read.
    mutating func buildID(of entry: ProcMapsEntry, isMainExecutable: Bool) -> String {
        guard entry.path.hasPrefix("/") else { return "" } // [vdso], [vsyscall]
        let key = FileKey(path: entry.path, device: entry.device, inode: entry.inode)
        if let known = buildIDs[key] { return known }
        // /proc/self/exe still opens if the executable was deleted or replaced.
        let path = isMainExecutable ? "/proc/self/exe" : entry.path
        var transient = false
        var id = MappedFile(path: path, transientFailure: &transient).flatMap { file in ELFImage(bytes: file.bytes)?.buildID } ?? ""
        if id.isEmpty {
            if generation == nil { scan() }
            id = objects.first { $0.name == entry.path }?.buildID ?? ""
        }
        if !(transient && id.isEmpty) { buildIDs[key] = id }
        return id
    }
}
