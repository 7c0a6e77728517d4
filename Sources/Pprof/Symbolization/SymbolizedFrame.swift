/// One function at an address; inlined code yields several frames.
struct SymbolizedFrame: Sendable, Hashable {
    var function: String     // readable, demangled Swift name (C names as they are)
    var systemName: String   // the raw (mangled) symbol name
    var file: String         // source file path, "" if unknown
    var line: Int            // source line, 0 if unknown
    var entry: UInt64        // runtime address of the function's first instruction, 0 if unknown
}
