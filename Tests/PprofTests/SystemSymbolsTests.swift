import Glibc
import Synchronization
import Testing
@testable import Pprof

// glibc's backtrace(3) (execinfo.h is not in Swift's Glibc module).
private typealias BacktraceFunction = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32) -> Int32

private func libcObject() -> LoadedObject? {
    guard let getpid = dlsym(dlopen(nil, RTLD_LAZY), "getpid") else { return nil }
    let address = UInt64(UInt(bitPattern: getpid))
    return DynamicLoader.objects().objects.first { $0.contains(address) }
}

/// Whether this machine has glibc's separate debug file (Debian's libc6-dbg).
private let libcDebugFileInstalled: Bool = {
    guard let libc = libcObject(), let file = MappedFile(path: libc.name), let image = ELFImage(bytes: file.bytes) else {
        return false
    }
    var transient = false
    return SeparateDebugFile(for: image, path: libc.name, buildID: libc.buildID, transientFailure: &transient) != nil
}()

/// Return addresses of a fresh thread's stack, from its innermost frame out.
private func threadReturnAddresses() -> [UInt64] {
    let result = Mutex<[UInt64]>([])
    let spawned = PThread.spawn(name: "sym-test", joinable: true) {
        guard let pointer = dlsym(dlopen(nil, RTLD_LAZY), "backtrace") else { return }
        let backtrace = unsafeBitCast(pointer, to: BacktraceFunction.self)
        var frames = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
        let count = Int(backtrace(&frames, 64))
        result.withLock { $0 = frames[0..<count].compactMap { $0.map { UInt64(UInt(bitPattern: $0)) } } }
    }
    if case .success(let thread) = spawned { PThread.join(thread) }
    return result.withLock { $0 }
}

@Suite("System libraries' symbols")
struct SystemSymbolsTests {
    @Test("glibc's local functions get their names from its separate debug file (libc6-dbg)",
          .enabled(if: libcDebugFileInstalled, "no separate debug file for this libc: apt-get install libc6-dbg"))
    func libcLocalNames() throws {
        let libc = try #require(libcObject())
        let inLibc = threadReturnAddresses().filter { libc.contains($0) }
        #expect(!inLibc.isEmpty)
        // start_thread is a local symbol: only .symtab names it, and libc.so.6 has none.
        let names = inLibc.compactMap { Symbolizer.shared.frames(at: $0 - 1).last?.function }
        #expect(names.contains("start_thread"), "\(names)")
    }

    @Test("an address in a library's code that no symbol covers is named after the library")
    func unnamedAddressNamesItsLibrary() throws {
        let symbolizer = Symbolizer() // its own cache, not the shared one
        let getpid = UInt64(UInt(bitPattern: try #require(dlsym(dlopen(nil, RTLD_LAZY), "getpid"))))
        let code = try #require(symbolizer.executableMappings().first { $0.start <= getpid && getpid < $0.limit })
        // Alignment padding between functions belongs to no symbol.
        let unnamed = try #require((code.start..<min(code.limit, code.start + 1 << 16)).first { address in
            symbolizer.frames(at: address).isEmpty
        })
        let frame = try #require(FunctionNames(base: symbolizer, full: false).frames(at: unnamed).last)
        let file = code.path.split(separator: "/").last.map(String.init) ?? code.path
        #expect(frame.function == "[\(file)]" && file.hasPrefix("libc"))
    }

    @Test("stripped glibc points to its debug file with .gnu_debuglink")
    func debugLink() throws {
        let libc = try #require(libcObject())
        let file = try #require(MappedFile(path: libc.name))
        let image = try #require(ELFImage(bytes: file.bytes))
        #expect(!image.hasFullSymbolTable)
        #expect(image.debugLinkName()?.isEmpty == false)
    }
}
