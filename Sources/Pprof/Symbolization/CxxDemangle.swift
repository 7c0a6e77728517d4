import Glibc

/// C++ symbols (the Swift runtime's own, `_ZN5swift…`) demangled with the
/// C++ runtime's `__cxa_demangle`, which every Swift process has loaded
/// (libstdc++); looked up at run time, so nothing breaks without it.
enum CxxDemangle {
    private typealias Demangle = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?,
                                                UnsafeMutablePointer<Int>?, UnsafeMutablePointer<Int32>?)
        -> UnsafeMutablePointer<CChar>?

    private static let demangle: Demangle? = {
        guard let handle = dlopen(nil, RTLD_LAZY), let symbol = dlsym(handle, "__cxa_demangle") else { return nil }
        return unsafeBitCast(symbol, to: Demangle.self)
    }()

    /// The demangled name, or nil if `name` is not a mangled C++ name.
    static func demangled(_ name: String) -> String? {
        guard name.hasPrefix("_Z"), let demangle else { return nil }
        var status: Int32 = 0
        guard let result = demangle(name, nil, nil, &status) else { return nil }
        defer { free(result) }
        return status == 0 ? String(cString: result) : nil
    }
}
