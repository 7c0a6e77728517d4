#if canImport(Runtime)
// Backtrace(architecture:frames:images:) and RichFrame are SPI of the
// toolchain's Runtime module (the one Swift's crash backtracer uses).
@_spi(Internal) internal import Runtime
#endif

/// What debug info says about one address.
struct SourceFrame {
    var rawName: String   // linkage (mangled) name, "" if unknown
    var file: String      // "" if unknown
    var line: Int         // 0 if unknown
    var inlined: Bool
    var offset: Int?      // address minus the symbol's start, if a symbol was found
}

/// File, line and inlined frames from DWARF, through the toolchain's
/// Runtime module: it already reads .debug_info/.debug_line (including
/// compressed sections) and expands DW_TAG_inlined_subroutine, which would
/// otherwise mean a hand-written DWARF reader.
///
/// Callers serialise access (the Symbolizer's lock); the image map is only
/// re-captured when the set of loaded objects changes.
struct SourceLocator {
    #if canImport(Runtime)
    private var images: ImageMap = ImageMap.capture()
    #endif

    #if arch(x86_64)
    private static let architecture = "x86_64"
    #else
    private static let architecture = "arm64"
    #endif

    static var isAvailable: Bool {
        #if canImport(Runtime)
        true
        #else
        false
        #endif
    }

    /// Call after libraries were loaded or unloaded.
    mutating func refresh() {
        #if canImport(Runtime)
        images = ImageMap.capture()
        #endif
    }

    /// Inlined callees first, the physical function last; [] if the address
    /// is in no known image.
    func frames(at address: UInt64) -> [SourceFrame] {
        #if canImport(Runtime)
        // .programCounter: callers already turned return addresses into call
        // addresses, so Runtime must not subtract 1 again.
        let backtrace = Backtrace(architecture: SourceLocator.architecture,
                                  frames: CollectionOfOne(RichFrame<UInt64>.programCounter(address)),
                                  images: images)
        guard let symbolicated = backtrace.symbolicated(
            with: images, options: [.showInlineFrames, .showSourceLocations, .useSymbolCache])
        else { return [] }
        var result: [SourceFrame] = []
        for frame in symbolicated.frames {
            // Runtime appends markers (e.g. .truncated) after the real frames.
            guard case .programCounter = frame.captured else { continue }
            let location = frame.symbol?.sourceLocation
            result.append(SourceFrame(rawName: frame.symbol?.rawName ?? "",
                                      file: location?.path ?? "",
                                      line: max(0, location?.line ?? 0),
                                      inlined: frame.inlined,
                                      offset: frame.symbol?.offset))
        }
        return result
        #else
        return []
        #endif
    }
}
