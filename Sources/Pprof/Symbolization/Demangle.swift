import Glibc

// The runtime's demangler (libswiftCore). Declared by its symbol name, as
// the standard library itself does; a link-time reference (rather than
// dlsym) also works with a statically linked standard library.
@_silgen_name("swift_demangle")
private func swiftDemangle(
    _ mangledName: UnsafePointer<CChar>?,
    _ mangledNameLength: Int,
    _ outputBuffer: UnsafeMutablePointer<CChar>?,
    _ outputBufferSize: UnsafeMutablePointer<Int>?,
    _ flags: UInt32
) -> UnsafeMutablePointer<CChar>?

/// Mangling prefixes of Swift symbols: current ($s, and $e for embedded),
/// Swift 4 ($S, _T0), each also with the extra underscore some platforms add.
private let swiftManglingPrefixes = ["$s", "_$s", "$e", "_$e", "$S", "_$S", "_T0"]

/// Demangles a Swift symbol with swift_demangle from libswiftCore; returns
/// the input unchanged if not Swift.
func demangleSwiftSymbol(_ mangled: String) -> String {
    // The prefix check keeps C and C++ names away from the demangler.
    guard swiftManglingPrefixes.contains(where: mangled.hasPrefix) else { return mangled }
    return mangled.withCString { name in
        guard let demangled = swiftDemangle(name, strlen(name), nil, nil, 0) else { return mangled }
        defer { free(demangled) }
        return String(cString: demangled)
    }
}
