import Glibc

/// The file distributions install a binary's stripped symbols and DWARF in
/// (Debian's `libc6-dbg`, `*-dbgsym` packages): found by build id,
/// /usr/lib/debug/.build-id/ab/cdef….debug, else by the name in the
/// binary's `.gnu_debuglink` section, looked up where GDB looks (beside the
/// binary, in its `.debug/` directory, and under /usr/lib/debug/). A file is
/// used only if its build id is the binary's: a stale one would give wrong
/// names.
struct SeparateDebugFile {
    let image: ELFImage
    /// Keeps the mapping behind `image` alive.
    let file: MappedFile

    static let debugRoot = "/usr/lib/debug"

    /// - Parameters:
    ///   - image: the binary (its build id and `.gnu_debuglink`).
    ///   - path: where the binary is, for `.gnu_debuglink`'s relative name.
    ///   - buildID: the loaded image's build id, if known ("" if not).
    ///   - transientFailure: set if a candidate could not be read for a
    ///     reason that may pass (descriptors, memory), so that the caller
    ///     does not remember the binary as having no debug file.
    init?(for image: ELFImage, path: String, buildID: String, transientFailure: inout Bool) {
        transientFailure = false
        let id = buildID.isEmpty ? image.buildID : buildID
        guard id.utf8.count > 2 else { return nil }
        var candidates = ["\(Self.debugRoot)/.build-id/\(id.prefix(2))/\(id.dropFirst(2)).debug"]
        if let link = image.debugLinkName(), !link.contains("/") {
            let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            candidates += ["\(directory)/\(link)", "\(directory)/.debug/\(link)", "\(Self.debugRoot)\(directory)/\(link)"]
        }
        for candidate in candidates where candidate != path {
            var transient = false
            let file = MappedFile(path: candidate, transientFailure: &transient)
            transientFailure = transientFailure || transient
            if let file, let debug = ELFImage(bytes: file.bytes), debug.buildID == id {
                self.image = debug
                self.file = file
                return
            }
        }
        return nil
    }
}

extension ELFImage {
    /// Whether the image has a full symbol table (.symtab), not only the
    /// dynamic one: stripped system libraries have only .dynsym.
    var hasFullSymbolTable: Bool {
        sectionHeaders.contains { $0.sh_type == SHT_SYMTAB && $0.sh_size > 0 }
    }

    /// The file name in `.gnu_debuglink` (a NUL-terminated name, then a CRC).
    func debugLinkName() -> String? {
        guard let section = sectionsByName()[".gnu_debuglink"], section.sh_size > 1,
              let name = cString(at: section.sh_offset), !name.isEmpty,
              UInt64(name.utf8.count) < section.sh_size else { return nil }
        return name
    }
}
