import Glibc

/// One object the dynamic loader has mapped: the main program, a shared
/// library (also one dlopen'ed later), or the vDSO.
struct LoadedObject: Hashable {
    /// The loader's name for it; the main program's comes from /proc/self/exe.
    var name: String
    var isMainProgram: Bool
    /// Runtime address minus ELF virtual address.
    var bias: UInt64
    /// Runtime ranges of the PT_LOAD segments.
    var segments: [Range<UInt64>]
    /// The build id in the loaded image ("" if none): what actually runs,
    /// even if the file on disk has since been replaced.
    var buildID: String
    /// Start and size of the ELF image in memory, when one segment maps the
    /// whole file from offset 0 (the vDSO, which has no file to open).
    var memoryImage: (start: UInt64, count: UInt64)?

    func contains(_ address: UInt64) -> Bool {
        segments.contains { $0.contains(address) }
    }

    /// The file to read symbols from.
    var openPath: String { isMainProgram ? "/proc/self/exe" : name }

    static func == (a: LoadedObject, b: LoadedObject) -> Bool {
        a.name == b.name && a.bias == b.bias && a.segments == b.segments
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(bias)
    }
}

/// glibc's counts of objects loaded and unloaded so far: if they have not
/// moved, the set of loaded objects has not changed.
struct LoaderGeneration: Equatable {
    var adds: UInt64
    var subs: UInt64
}

/// Enumerates loaded objects with dl_iterate_phdr.
///
/// Its prototype and `struct dl_phdr_info` are behind _GNU_SOURCE, which
/// Swift's Glibc module is built without, so the function comes from dlsym
/// and the struct is read at its fixed LP64 glibc offsets.
enum DynamicLoader {
    private typealias Callback = @convention(c) (UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32
    private typealias Iterate = @convention(c) (Callback, UnsafeMutableRawPointer?) -> Int32

    // Offsets in struct dl_phdr_info (LP64).
    private static let addrOffset = 0, nameOffset = 8, phdrOffset = 16, phnumOffset = 24
    private static let addsOffset = 32, subsOffset = 40

    private final class Collector {
        var objects: [LoadedObject] = []
        var generation = LoaderGeneration(adds: 0, subs: 0)
        let wantObjects: Bool
        init(wantObjects: Bool) { self.wantObjects = wantObjects }
    }

    private static let iterate: Iterate? = {
        guard let handle = dlopen(nil, RTLD_LAZY), let symbol = dlsym(handle, "dl_iterate_phdr") else { return nil }
        return unsafeBitCast(symbol, to: Iterate.self)
    }()

    /// All loaded objects, the main program first.
    static func objects() -> (objects: [LoadedObject], generation: LoaderGeneration) {
        let collector = run(wantObjects: true)
        return (collector.objects, collector.generation)
    }

    /// Cheap change check: stops after the first object.
    static func generation() -> LoaderGeneration {
        run(wantObjects: false).generation
    }

    private static func run(wantObjects: Bool) -> Collector {
        let collector = Collector(wantObjects: wantObjects)
        guard let iterate else { return collector }
        withExtendedLifetime(collector) {
            _ = iterate({ info, size, context in
                guard let info, let context else { return 1 }
                let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                if size >= DynamicLoader.subsOffset + 8 {
                    collector.generation = LoaderGeneration(
                        adds: info.load(fromByteOffset: DynamicLoader.addsOffset, as: UInt64.self),
                        subs: info.load(fromByteOffset: DynamicLoader.subsOffset, as: UInt64.self))
                }
                guard collector.wantObjects else { return 1 }
                collector.objects.append(DynamicLoader.object(from: UnsafeRawPointer(info), isFirst: collector.objects.isEmpty))
                return 0
            }, Unmanaged.passUnretained(collector).toOpaque())
        }
        return collector
    }

    private static func object(from info: UnsafeRawPointer, isFirst: Bool) -> LoadedObject {
        let bias = info.load(fromByteOffset: addrOffset, as: UInt64.self)
        let namePointer = info.load(fromByteOffset: nameOffset, as: UnsafePointer<CChar>?.self)
        let phdrs = info.load(fromByteOffset: phdrOffset, as: UnsafePointer<Elf64_Phdr>?.self)
        let phnum = Int(info.load(fromByteOffset: phnumOffset, as: UInt16.self))
        var name = namePointer.map { String(cString: $0) } ?? ""
        // The main program is the first object and has an empty name.
        let isMain = isFirst && name.isEmpty
        if isMain { name = mainExecutablePath() }
        var segments: [Range<UInt64>] = []
        var buildID = ""
        var loads: [Elf64_Phdr] = []
        for index in 0..<(phdrs == nil ? 0 : phnum) {
            let phdr = phdrs![index]
            if phdr.p_type == PT_LOAD, phdr.p_memsz > 0 {
                loads.append(phdr)
                segments.append((bias &+ phdr.p_vaddr)..<(bias &+ phdr.p_vaddr &+ phdr.p_memsz))
            } else if phdr.p_type == PT_NOTE, buildID.isEmpty,
                      let start = UnsafeRawPointer(bitPattern: UInt(bias &+ phdr.p_vaddr)) {
                // Note segments lie inside a loaded segment, so this memory is mapped.
                let notes = UnsafeRawBufferPointer(start: start, count: Int(phdr.p_memsz))
                buildID = gnuBuildID(inNotes: notes, alignment: phdr.p_align) ?? ""
            }
        }
        var memoryImage: (UInt64, UInt64)?
        if loads.count == 1, loads[0].p_offset == 0 {
            // The kernel maps whole pages, and the vDSO's section headers lie
            // past p_filesz on its last page.
            let page = UInt64(max(4096, sysconf(Int32(_SC_PAGESIZE))))
            let start = bias &+ loads[0].p_vaddr
            let end = (start &+ loads[0].p_memsz &+ page &- 1) & ~(page &- 1)
            memoryImage = (start, end &- start)
        }
        return LoadedObject(name: name, isMainProgram: isMain, bias: bias, segments: segments,
                            buildID: buildID, memoryImage: memoryImage)
    }
}
