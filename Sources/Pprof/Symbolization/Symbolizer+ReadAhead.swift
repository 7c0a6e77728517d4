/// Reading tables ahead of the first profile (`SymbolPreload` drives it).
/// The heavy reading is done outside the symbolizer's lock, on a copy of
/// its state, and the results are handed in under the lock: the read-ahead
/// runs at nice 19, and a request must never wait behind a thread the
/// scheduler starves.
extension Symbolizer {
    /// Loads the symbol, line and inline tables of every loaded object that
    /// has none yet (`PPROF_SYMBOL_PRELOAD=1`). Each object is read
    /// outside the lock: a request meanwhile is never kept waiting; if it
    /// needs the same object it reads it too, and the first result is kept.
    func preload() {
        let objects = state.withLock { state -> [LoadedObject] in
            if state.generation == nil { state.scan() }
            return state.objects
        }
        for object in objects where state.withLock({ $0.symbolTables[object] == nil }) {
            let loaded = Handover(SymbolizerState.loadSymbols(of: object))
            var transient = false
            var info = loaded.value.table.map {
                SymbolizerState.loadDebugInfo(of: object, symbols: $0, fromDebugFile: loaded.value.fromDebugFile,
                                              transientFailure: &transient)
            }
            info?.readAll()
            info?.releaseInflatedSections()
            let keepInfo = !transient
            state.withLock { state in
                defer { state.failedNow = [] }
                if state.symbolTables[object] == nil { state.remember(loaded.value, of: object) }
                if let info, keepInfo, state.symbolTables[object] != nil, state.debugInfo[object] == nil {
                    state.debugInfo[object] = info
                }
            }
        }
        Self.returnFreedMemory()
    }

    /// Reads exactly what symbolizing `addresses` needs (the symbol tables
    /// of the objects they lie in, those objects' unit indexes, the units
    /// holding them) and caches their frames, as a request for them would,
    /// but on a copy of the state, outside the lock. What the copy read is
    /// then handed in; what a request read meanwhile is kept. Returns the
    /// frames it found.
    @discardableResult
    func readAhead(_ addresses: [UInt64]) -> [UInt64: [SymbolizedFrame]] {
        let interval = rescanInterval
        var work = state.withLock { state in
            if state.generation == nil { state.scan() }
            return Handover(state)
        }.value
        // Only what this read-ahead symbolizes goes back into the cache.
        work.frameCache = [:]
        work.frameCacheBytes = 0
        for address in addresses { _ = work.frames(at: address, rescanInterval: interval) }
        let loaded = work.takeLoadedTables()
        let result = Handover(work)
        state.withLock { $0.adopt(result.value) }
        if loaded { Self.returnFreedMemory() }
        return result.value.frameCache
    }
}

/// A value built outside the lock and handed into it (or out of it) once.
/// Unchecked: the symbol tables point into mapped files, which are
/// read-only; the rest is copy-on-write storage, copied by whichever side
/// writes to it.
struct Handover<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

extension SymbolizerState {
    /// Takes from `work` (a copy of this state, read further outside the
    /// lock) the tables and cached frames this state lacks.
    mutating func adopt(_ work: SymbolizerState) {
        // Objects came or went meanwhile: the copy's tables may be stale.
        guard work.generation == generation else { return }
        for (object, table) in work.symbolTables where symbolTables[object] == nil {
            symbolTables[object] = table
            if work.symbolsFromDebugFile.contains(object) { symbolsFromDebugFile.insert(object) }
        }
        for (object, info) in work.debugInfo where symbolTables[object] != nil {
            if debugInfo[object] == nil { debugInfo[object] = info } else { debugInfo[object]?.adoptUnits(of: info) }
            // Held until a request reads none of the image's units (`endBatch`).
            if debugInfo[object]?.holdsInflatedSections == true { inflatedHeld.insert(object) }
        }
        for (address, frames) in work.frameCache where frameCache[address] == nil {
            cache(frames, at: address)
        }
    }
}
