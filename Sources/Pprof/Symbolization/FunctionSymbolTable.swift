import Glibc

/// The function symbols of one ELF image (.symtab and .dynsym merged),
/// sorted by address for nearest-preceding-symbol lookup.
///
/// .symtab matters: internal Swift functions are local symbols that dladdr,
/// which only sees .dynsym, cannot name.
struct FunctionSymbolTable {
    /// One function symbol as lookups see it (stored as `Entries` keeps it).
    struct Entry {
        /// st_value: an ELF virtual address.
        let address: UInt64
        /// end - address (at most 2^31 - 1), and in the top bit whether the symbol had a size.
        private let lengthAndSized: UInt32
        /// Where the NUL-terminated name starts in the image.
        private let name: UInt32

        /// nil if the name lies past 4 GiB into the file (not representable).
        init?(address: UInt64, end: UInt64, sized: Bool, nameOffset: UInt64) {
            guard let name = UInt32(exactly: nameOffset) else { return nil }
            self.address = address
            // A size-0 symbol runs to the end of its section, which may be far:
            // cut at 2 GiB, more than any function.
            let length = UInt32(min(end &- address, UInt64(Int32.max)))
            lengthAndSized = length | (sized ? 1 << 31 : 0)
            self.name = name
        }

        fileprivate init(address: UInt64, lengthAndSized: UInt32, name: UInt32) {
            self.address = address
            self.lengthAndSized = lengthAndSized
            self.name = name
        }

        /// address + size; for size-0 symbols the end of their section.
        var end: UInt64 { address &+ UInt64(lengthAndSized & ~(1 << 31)) }
        var sized: Bool { lengthAndSized >> 31 != 0 }
        var nameOffset: UInt64 { UInt64(name) }

        fileprivate func stored(base: UInt64) -> Entries.Stored {
            Entries.Stored(offset: UInt32(truncatingIfNeeded: address &- base), lengthAndSized: lengthAndSized, name: name)
        }
    }

    /// The entries sorted by address, 12 bytes each: a library like
    /// libswiftCore has tens of thousands, and every loaded object's table is
    /// kept. Addresses are 32-bit offsets from the first (an image's code
    /// spans far less than 4 GiB; symbols beyond are left out).
    struct Entries: RandomAccessCollection {
        fileprivate struct Stored {
            var offset: UInt32
            var lengthAndSized: UInt32
            var name: UInt32
        }

        let base: UInt64
        fileprivate let stored: [Stored]

        fileprivate init(sorted: [Entry]) {
            let base = sorted.first?.address ?? 0
            self.base = base
            let count = sorted.firstIndex { $0.address &- base > UInt64(UInt32.max) } ?? sorted.count
            stored = sorted[..<count].map { $0.stored(base: base) }
        }

        var startIndex: Int { 0 }
        var endIndex: Int { stored.count }
        var memoryBytes: Int { stored.capacity * MemoryLayout<Stored>.stride }

        subscript(index: Int) -> Entry {
            let s = stored[index]
            return Entry(address: base &+ UInt64(s.offset), lengthAndSized: s.lengthAndSized, name: s.name)
        }
    }

    let image: ELFImage
    let entries: Entries
    /// Linker-made code without symbols (PLT stubs): named after their section.
    let stubSections: [(start: UInt64, end: UInt64, name: String)]
    /// Keeps the mapped file alive as long as `image` points into it.
    let file: MappedFile?

    init(image: ELFImage, file: MappedFile?) {
        self.image = image
        self.file = file
        let sections = image.sectionHeaders
        typealias Candidate = (entry: Entry, binding: Int32)
        var candidates: [Candidate] = []
        for table in sections where table.sh_type == SHT_SYMTAB || table.sh_type == SHT_DYNSYM {
            let entrySize = table.sh_entsize
            guard entrySize >= UInt64(MemoryLayout<Elf64_Sym>.size), Int(table.sh_link) < sections.count else { continue }
            let strings = sections[Int(table.sh_link)]
            for index in 0..<(table.sh_size / entrySize) {
                guard let symbol = image.load(Elf64_Sym.self, at: table.sh_offset + index * entrySize) else { break }
                let type = Int32(symbol.st_info & 0xf)
                let binding = Int32(symbol.st_info >> 4)
                let sectionIndex = Int(symbol.st_shndx)
                guard type == STT_FUNC || type == STT_GNU_IFUNC, symbol.st_value != 0, symbol.st_name != 0,
                      sectionIndex != Int(SHN_UNDEF), sectionIndex < Int(SHN_LORESERVE), sectionIndex < sections.count,
                      UInt64(symbol.st_name) < strings.sh_size
                else { continue }
                let section = sections[sectionIndex]
                let sectionEnd = section.sh_addr &+ section.sh_size
                // Swift's `main` and hand-written assembly have size 0: they
                // extend to the next symbol, but never past their section.
                let end = symbol.st_size > 0 ? symbol.st_value &+ symbol.st_size : sectionEnd
                guard end > symbol.st_value else { continue }
                let nameOffset = strings.sh_offset + UInt64(symbol.st_name)
                guard let entry = Entry(address: symbol.st_value, end: end, sized: symbol.st_size > 0,
                                        nameOffset: nameOffset) else { continue }
                candidates.append((entry, binding))
            }
        }
        // Aliases share an address: keep the most telling name: sized, with
        // fewest leading underscores (the weak `getpid`, not the global
        // `__getpid`), then global before weak before local; of equals the
        // first. Ranked only where addresses tie (the sort is stable).
        func rank(_ candidate: Candidate) -> (Int, Int, Int) {
            (candidate.entry.sized ? 1 : 0, -image.leadingUnderscores(at: candidate.entry.nameOffset),
             candidate.binding == STB_GLOBAL ? 2 : candidate.binding == STB_WEAK ? 1 : 0)
        }
        candidates.sort { $0.entry.address < $1.entry.address }
        var unique: [Entry] = []
        unique.reserveCapacity(candidates.count)
        var start = 0
        while start < candidates.count {
            var best = start, next = start + 1
            while next < candidates.count, candidates[next].entry.address == candidates[start].entry.address {
                if rank(candidates[next]) > rank(candidates[best]) { best = next }
                next += 1
            }
            unique.append(candidates[best].entry)
            start = next
        }
        entries = Entries(sorted: unique)
        var stubs: [(start: UInt64, end: UInt64, name: String)] = []
        let namesIndex = Int(image.header.e_shstrndx)
        if namesIndex > 0, namesIndex < sections.count {
            let names = sections[namesIndex]
            for section in sections where section.sh_size > 0 && section.sh_name > 0 {
                guard let name = image.cString(at: names.sh_offset + UInt64(section.sh_name)),
                      name == ".plt" || name == ".plt.sec" || name == ".plt.got" || name == ".iplt" else { continue }
                stubs.append((section.sh_addr, section.sh_addr &+ section.sh_size, "[\(name)]"))
            }
        }
        stubSections = stubs
    }

    /// Bytes held by the table itself (the symbol names stay in the mapped file).
    var memoryBytes: Int {
        entries.memoryBytes
            + stubSections.capacity * MemoryLayout<(start: UInt64, end: UInt64, name: String)>.stride
    }

    /// The function containing the ELF virtual address `address`.
    func lookup(_ address: UInt64) -> (name: String, address: UInt64)? {
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].address <= address { low = middle + 1 } else { high = middle }
        }
        if let stub = stubSections.first(where: { $0.start <= address && address < $0.end }) {
            return (stub.name, stub.start)
        }
        guard low > 0 else { return nil }
        var found: Entry?
        if address < entries[low - 1].end {
            found = entries[low - 1]
        } else {
            // A sized symbol can enclose later ones (e.g. local labels typed
            // as functions): look a few entries back before giving up.
            for index in stride(from: low - 2, through: max(0, low - 9), by: -1)
            where entries[index].sized && address < entries[index].end {
                found = entries[index]
                break
            }
        }
        guard let entry = found, let name = image.cString(at: entry.nameOffset), !name.isEmpty else { return nil }
        return (name, entry.address)
    }
}

extension FunctionSymbolTable {
    /// ELF virtual address ranges of the functions named exactly `name`
    /// (compared as bytes, without building a String per symbol).
    func ranges(named name: String) -> [Range<UInt64>] {
        let wanted = Array(name.utf8) + [0]
        let bytes = image.bytes
        return entries.filter { entry in
            guard entry.sized, entry.nameOffset + UInt64(wanted.count) <= UInt64(bytes.count) else { return false }
            let start = Int(entry.nameOffset)
            return wanted.indices.allSatisfy { bytes[start + $0] == wanted[$0] }
        }.map { $0.address..<$0.end }
    }
}

extension ELFImage {
    /// The NUL-terminated string starting at a file offset.
    func cString(at offset: UInt64) -> String? {
        guard offset < UInt64(bytes.count) else { return nil }
        let tail = UnsafeRawBufferPointer(rebasing: bytes[Int(offset)...])
        guard let length = tail.firstIndex(of: 0) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: tail[0..<length]), as: UTF8.self)
    }

    func leadingUnderscores(at offset: UInt64) -> Int {
        var count = 0
        while offset + UInt64(count) < UInt64(bytes.count), bytes[Int(offset) + count] == UInt8(ascii: "_") {
            count += 1
        }
        return count
    }
}
