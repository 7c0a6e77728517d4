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
/// calls from its .debug_info (DW_TAG_inlined_subroutine), both indexed once
/// per image on the first address that lands in it (`DebugInfo`) and then
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

    /// Bound on cached addresses; a process has far fewer distinct sampled PCs.
    static let maxCachedAddresses = 200_000

    private let state = Mutex(State())

    init(rescanInterval: Duration = .seconds(1)) {
        self.rescanInterval = rescanInterval
    }

    /// Executable ("x") mappings from /proc/self/maps in file order, the
    /// main executable (/proc/self/exe) first.
    func executableMappings() -> [ExecutableMapping] {
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
        return state.withLock { $0.frames(at: address, rescanInterval: interval) }
    }

    /// `frames(at:)` for many addresses, under one acquisition of the lock.
    /// Profiles ask for thousands of addresses; taken once per address, the
    /// lock made concurrent requests convoy (16 clients on 2 cores spent 16%
    /// of the machine's CPU spinning in it).
    func frames(at addresses: [UInt64]) -> [UInt64: [SymbolizedFrame]] {
        let interval = rescanInterval
        return state.withLock { state in
            var table: [UInt64: [SymbolizedFrame]] = [:]
            table.reserveCapacity(addresses.count)
            for address in addresses where table[address] == nil {
                table[address] = state.frames(at: address, rescanInterval: interval)
            }
            return table
        }
    }

    /// Loads the symbol, line and inline tables of every loaded object that
    /// has none yet, so the first profile does not pay for them
    /// (`SymbolPreload` runs it once, at low priority). Each object is read
    /// outside the lock: a request meanwhile is never kept waiting; if it
    /// needs the same object it reads it too, and the first result is kept.
    func preload() {
        let objects = state.withLock { state -> [LoadedObject] in
            if state.generation == nil { state.scan() }
            return state.objects
        }
        for object in objects where state.withLock({ $0.symbolTables[object] == nil }) {
            let loaded = Handover(table: State.loadSymbols(of: object))
            let info = loaded.table.map { State.loadDebugInfo(of: object, symbols: $0) }
            state.withLock { state in
                if state.symbolTables[object] == nil { state.symbolTables[object] = .some(loaded.table) }
                if let info, state.debugInfo[object] == nil { state.debugInfo[object] = info }
            }
        }
    }

    /// How often the loaded objects were listed (for tests of the rate limit).
    var scanCount: Int { state.withLock { $0.scanCount } }
}

/// A symbol table built outside the lock and handed into it once: nothing
/// else refers to it, and the mapped file it points into is read-only.
private struct Handover: @unchecked Sendable {
    var table: FunctionSymbolTable?
}

/// Identifies a file version for the build-id cache.
private struct FileKey: Hashable {
    var path: String
    var device: String
    var inode: UInt64
}

private struct State {
    var objects: [LoadedObject] = []
    /// Symbol tables, loaded on an object's first address and kept for the
    /// process's life; nil where the file could not be read.
    var symbolTables: [LoadedObject: FunctionSymbolTable?] = [:]
    /// Line and inline tables, built from the same file on an object's
    /// first address; `DebugInfo.empty` where it has no DWARF.
    var debugInfo: [LoadedObject: DebugInfo] = [:]
    var generation: LoaderGeneration?
    var lastScan: ContinuousClock.Instant?
    var frameCache: [UInt64: [SymbolizedFrame]] = [:]
    var buildIDs: [FileKey: String] = [:]
    var scanCount = 0

    mutating func frames(at address: UInt64, rescanInterval: Duration) -> [SymbolizedFrame] {
        if let cached = frameCache[address] { return cached }
        guard let object = object(containing: address, rescanInterval: rescanInterval) else {
            // Not cached: a library loaded later may yet cover it.
            return []
        }
        let frames = symbolize(address, in: object)
        if frameCache.count >= Symbolizer.maxCachedAddresses { frameCache.removeAll() }
        frameCache[address] = frames
        return frames
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
            frameCache.removeAll()
        }
        generation = newGeneration
        lastScan = ContinuousClock.now
    }

    mutating func symbols(of object: LoadedObject) -> FunctionSymbolTable? {
        if let known = symbolTables[object] { return known }
        let table = Self.loadSymbols(of: object)
        symbolTables[object] = .some(table)
        return table
    }

    static func loadSymbols(of object: LoadedObject) -> FunctionSymbolTable? {
        if let file = MappedFile(path: object.openPath), let elf = ELFImage(bytes: file.bytes) {
            // A file replaced on disk since it was loaded would give wrong names.
            let fileID = elf.buildID
            if object.buildID.isEmpty || fileID.isEmpty || fileID == object.buildID {
                return FunctionSymbolTable(image: elf, file: file)
            }
        }
        if let memory = object.memoryImage, let start = UnsafeRawPointer(bitPattern: UInt(memory.start)),
           let elf = ELFImage(bytes: UnsafeRawBufferPointer(start: start, count: Int(memory.count))) {
            return FunctionSymbolTable(image: elf, file: nil)
        }
        return nil
    }

    mutating func debugInfo(of object: LoadedObject, symbols: FunctionSymbolTable) -> DebugInfo {
        if let known = debugInfo[object] { return known }
        let info = Self.loadDebugInfo(of: object, symbols: symbols)
        debugInfo[object] = info
        return info
    }

    static func loadDebugInfo(of object: LoadedObject, symbols: FunctionSymbolTable) -> DebugInfo {
        DebugInfo(image: symbols.image) ?? separateDebugInfo(of: object, image: symbols.image) ?? .empty
    }

    /// DWARF from a separate debug file, where distributions install them:
    /// /usr/lib/debug/.build-id/ab/cdef....debug (e.g. libc6-dbg). Used only
    /// if its build id matches; files and lines only, no inlined frames.
    static func separateDebugInfo(of object: LoadedObject, image: ELFImage) -> DebugInfo? {
        let id = object.buildID.isEmpty ? image.buildID : object.buildID
        guard id.utf8.count > 2 else { return nil }
        let path = "/usr/lib/debug/.build-id/\(id.prefix(2))/\(id.dropFirst(2)).debug"
        guard let file = MappedFile(path: path), let debug = ELFImage(bytes: file.bytes), debug.buildID == id else {
            return nil
        }
        return withExtendedLifetime(file) { DebugInfo(image: debug, inlinedFrames: false) }
    }

    /// The physical function's frame, preceded by one frame per inlined call
    /// around the address (innermost first). The innermost frame gets the
    /// line table's file and line; each outer one the call site of the
    /// function it inlined.
    mutating func symbolize(_ address: UInt64, in object: LoadedObject) -> [SymbolizedFrame] {
        guard let table = symbols(of: object) else { return [] }
        let fileAddress = address &- object.bias
        guard let symbol = table.lookup(fileAddress) else { return [] }
        let info = debugInfo(of: object, symbols: table)
        let location = info.lines.lookup(fileAddress)
        var file = location?.file ?? "", line = location?.line ?? 0
        var frames: [SymbolizedFrame] = []
        for call in info.inlines.lookup(fileAddress) {
            frames.append(SymbolizedFrame(function: call.function, systemName: call.systemName,
                                          file: file, line: line, entry: 0))
            file = call.callFile
            line = call.callLine
        }
        frames.append(SymbolizedFrame(function: demangleSwiftSymbol(symbol.name), systemName: symbol.name,
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
        var id = MappedFile(path: path).flatMap { file in ELFImage(bytes: file.bytes)?.buildID } ?? ""
        if id.isEmpty {
            if generation == nil { scan() }
            id = objects.first { $0.name == entry.path }?.buildID ?? ""
        }
        buildIDs[key] = id
        return id
    }
}
