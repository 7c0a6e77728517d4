import Glibc
import Synchronization

/// Names addresses of this process, in-process, so profiles leave with
/// function names, files and lines and need no binaries on the reader's side.
///
/// Names come from the ELF symbol tables (.symtab and .dynsym) of each
/// loaded object, read from disk: they name every function, including the
/// local Swift symbols dladdr cannot see, and prefer real names over the
/// internal aliases debug info may report (`getpid`, not `__GI___getpid`).
/// Files, lines and inlined frames come from DWARF through the toolchain's
/// Runtime module (SourceLocator), which also serves as the name source when
/// the symbol tables know nothing.
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
        return state.withLock { state in
            if let cached = state.frameCache[address] { return cached }
            guard let image = state.image(containing: address, rescanInterval: interval) else {
                // Not cached: a library loaded later may yet cover it.
                return []
            }
            let frames = state.symbolize(address, in: image)
            if state.frameCache.count >= Symbolizer.maxCachedAddresses { state.frameCache.removeAll() }
            state.frameCache[address] = frames
            return frames
        }
    }

    /// How often the loaded objects were listed (for tests of the rate limit).
    var scanCount: Int { state.withLock { $0.scanCount } }
}

/// A loaded object and its function symbols (nil when its file could not be read).
private struct Image {
    var object: LoadedObject
    var symbols: FunctionSymbolTable?
}

/// Identifies a file version for the build-id cache.
private struct FileKey: Hashable {
    var path: String
    var device: String
    var inode: UInt64
}

private struct State {
    var images: [Image] = []
    /// Every object ever seen, with its symbols: kept for the process's life.
    var knownImages: [LoadedObject: Image] = [:]
    var generation: LoaderGeneration?
    var lastScan: ContinuousClock.Instant?
    var frameCache: [UInt64: [SymbolizedFrame]] = [:]
    var buildIDs: [FileKey: String] = [:]
    var sources: SourceLocator?
    var scanCount = 0

    /// The loaded object covering `address`. Scans the loader's list the
    /// first time, and again on a miss (a library may have been dlopen'ed),
    /// at most once per `rescanInterval`, and only if the loader's
    /// add/remove counters moved.
    mutating func image(containing address: UInt64, rescanInterval: Duration) -> Image? {
        if generation == nil { scan() }
        if let image = images.first(where: { $0.object.contains(address) }) { return image }
        let now = ContinuousClock.now
        if let lastScan, now - lastScan < rescanInterval { return nil }
        lastScan = now
        guard DynamicLoader.generation() != generation else { return nil }
        scan()
        return images.first { $0.object.contains(address) }
    }

    mutating func scan() {
        let (objects, newGeneration) = DynamicLoader.objects()
        scanCount += 1
        images = objects.map { object in
            if let known = knownImages[object] { return known }
            let image = Image(object: object, symbols: loadSymbols(of: object))
            knownImages[object] = image
            return image
        }
        if generation != nil {
            // Objects came or went: cached results for reused addresses may be stale.
            frameCache.removeAll()
            sources?.refresh()
        }
        generation = newGeneration
        lastScan = ContinuousClock.now
    }

    func loadSymbols(of object: LoadedObject) -> FunctionSymbolTable? {
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

    mutating func symbolize(_ address: UInt64, in image: Image) -> [SymbolizedFrame] {
        if sources == nil { sources = SourceLocator() }
        let located = sources?.frames(at: address) ?? []
        var frames: [SymbolizedFrame] = []
        for source in located where source.inlined && !source.rawName.isEmpty {
            // No entry: an inlined callee has no code of its own.
            frames.append(SymbolizedFrame(function: demangleSwiftSymbol(source.rawName), systemName: source.rawName,
                                          file: source.file, line: source.line, entry: 0))
        }
        let physical = located.last { !$0.inlined }
        if let symbol = image.symbols?.lookup(address &- image.object.bias) {
            frames.append(SymbolizedFrame(function: demangleSwiftSymbol(symbol.name), systemName: symbol.name,
                                          file: physical?.file ?? "", line: physical?.line ?? 0,
                                          entry: symbol.address &+ image.object.bias))
        } else if let physical, !physical.rawName.isEmpty {
            frames.append(SymbolizedFrame(function: demangleSwiftSymbol(physical.rawName), systemName: physical.rawName,
                                          file: physical.file, line: physical.line,
                                          entry: physical.offset.map { address &- UInt64($0) } ?? 0))
        } else {
            return [] // inlined frames without their physical function would mislead
        }
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
            id = images.first { $0.object.name == entry.path }?.object.buildID ?? ""
        }
        buildIDs[key] = id
        return id
    }
}
