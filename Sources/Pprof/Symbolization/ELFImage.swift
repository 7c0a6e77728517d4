import Glibc

/// A bounds-checked view of a 64-bit little-endian ELF image held in memory
/// (a mapped file, or the vDSO as the kernel mapped it). Every read is
/// checked, so a truncated or odd file yields "nothing found", never a crash.
struct ELFImage {
    let bytes: UnsafeRawBufferPointer
    let header: Elf64_Ehdr

    init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= MemoryLayout<Elf64_Ehdr>.size,
              bytes[0] == 0x7f, bytes[1] == UInt8(ascii: "E"),
              bytes[2] == UInt8(ascii: "L"), bytes[3] == UInt8(ascii: "F"),
              bytes[Int(EI_CLASS)] == UInt8(ELFCLASS64),
              bytes[Int(EI_DATA)] == UInt8(ELFDATA2LSB)
        else { return nil }
        self.bytes = bytes
        self.header = bytes.loadUnaligned(as: Elf64_Ehdr.self)
    }

    /// Reads a T at `offset`, or nil if it does not fit in the image.
    func load<T>(_ type: T.Type, at offset: UInt64) -> T? {
        let size = UInt64(MemoryLayout<T>.size)
        guard offset <= UInt64(bytes.count), UInt64(bytes.count) - offset >= size else { return nil }
        return bytes.loadUnaligned(fromByteOffset: Int(offset), as: T.self)
    }

    /// The bytes at [offset, offset + count), or nil if out of range.
    func slice(at offset: UInt64, count: UInt64) -> UnsafeRawBufferPointer? {
        guard offset <= UInt64(bytes.count), UInt64(bytes.count) - offset >= count else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[Int(offset)..<Int(offset + count)])
    }

    var sectionHeaders: [Elf64_Shdr] {
        let entrySize = UInt64(header.e_shentsize)
        guard header.e_shoff != 0, entrySize >= UInt64(MemoryLayout<Elf64_Shdr>.size) else { return [] }
        return (0..<UInt64(header.e_shnum)).compactMap {
            load(Elf64_Shdr.self, at: header.e_shoff + $0 * entrySize)
        }
    }

    var programHeaders: [Elf64_Phdr] {
        let entrySize = UInt64(header.e_phentsize)
        guard header.e_phoff != 0, entrySize >= UInt64(MemoryLayout<Elf64_Phdr>.size) else { return [] }
        return (0..<UInt64(header.e_phnum)).compactMap {
            load(Elf64_Phdr.self, at: header.e_phoff + $0 * entrySize)
        }
    }

    /// Lowercase hex of the NT_GNU_BUILD_ID note, "" if there is none.
    /// Loaded objects carry it in a PT_NOTE segment; files without program
    /// headers (rare here) are searched by SHT_NOTE sections.
    var buildID: String {
        for phdr in programHeaders where phdr.p_type == PT_NOTE {
            if let notes = slice(at: phdr.p_offset, count: phdr.p_filesz),
               let id = gnuBuildID(inNotes: notes, alignment: phdr.p_align) {
                return id
            }
        }
        for shdr in sectionHeaders where shdr.sh_type == SHT_NOTE {
            if let notes = slice(at: shdr.sh_offset, count: shdr.sh_size),
               let id = gnuBuildID(inNotes: notes, alignment: shdr.sh_addralign) {
                return id
            }
        }
        return ""
    }
}

/// Finds the GNU build-id note (name "GNU\0", type 3) in a note area.
/// Notes are 4-byte aligned unless the segment says 8 (GNU property notes).
func gnuBuildID(inNotes notes: UnsafeRawBufferPointer, alignment: UInt64) -> String? {
    let align = alignment == 8 ? 8 : 4
    func padded(_ n: Int) -> Int { (n + align - 1) & ~(align - 1) }
    var offset = 0
    while offset + 12 <= notes.count {
        let nameSize = Int(notes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let descSize = Int(notes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        let type = notes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
        let nameStart = offset + 12
        let descStart = nameStart + padded(nameSize)
        guard nameSize <= notes.count, descSize <= notes.count, descStart + descSize <= notes.count else { return nil }
        if type == UInt32(NT_GNU_BUILD_ID), nameSize == 4,
           Array(notes[nameStart..<nameStart + 4]) == [UInt8(ascii: "G"), UInt8(ascii: "N"), UInt8(ascii: "U"), 0] {
            return hexString(notes[descStart..<descStart + descSize])
        }
        offset = descStart + padded(descSize)
    }
    return nil
}

/// Lowercase hex, two digits per byte (Go prints build ids with %x).
func hexString<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0xf)])
    }
    return String(decoding: out, as: UTF8.self)
}

