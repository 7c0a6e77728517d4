/// The symbolizer's own memory, by table, as the heap profile's comment
/// reports it: the arrays and strings it built (estimated from their
/// capacities, without allocator slack). The symbol files it maps are not
/// counted: their pages are the kernel's page cache, shared and reclaimable.
struct SymbolizerMemory: Sendable, Equatable {
    /// Cached frames per address (bounded by `Symbolizer.maxCachedBytes`).
    var cache: Int
    /// Function symbol tables (`FunctionSymbolTable`).
    var symbols = 0
    /// DWARF line tables (`LineTable`), with the per-unit index and the
    /// inflated debug sections held between requests (`UnitDebugInfo`).
    var lines = 0
    /// DWARF inlined-call tables (`InlineTable`).
    var inlines = 0

    var total: Int { cache + symbols + lines + inlines }
}
