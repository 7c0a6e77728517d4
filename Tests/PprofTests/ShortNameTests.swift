import Testing
@testable import Pprof

/// Short function names from real mangled symbols (the demo, this library,
/// the standard library and its concurrency runtime), demangled by the
/// runtime as the symbolizer does, each against the short form a person
/// reads in a flame graph.
@Suite("Short function names")
struct ShortNameTests {
    static let cases: [(mangled: String, short: String)] = [
        // Specialisations (the demo's sort, Array.append).
        ("$ss6_merge3low3mid4high6buffer2bySbSpyxG_A3GxxKXEtKlFSi_Tg5", "specialized Swift._merge(low:mid:high:buffer:by:)"),
        ("$sSa6appendyyxnFSi_Tg5", "specialized Swift.Array.append(_:)"),
        ("$sSZss17FixedWidthIntegerRzrlE10isMultiple2ofSbx_tFs7_Int128V_Tg5", "specialized Swift.SignedInteger.isMultiple(of:)"),
        ("$sSTsE8reversedSay7ElementQzGyF", "Swift.Sequence.reversed()"),
        // Closures, nested closures, @convention(c) thunks of closures, local defers.
        ("$s5Pprof7PThreadO5spawn4name8joinable_s6ResultOySuAA15HTTPServerErrorOGSS_SbyyYbctFZSvSgALcfU_",
         "closure #1 in Pprof.PThread.spawn(name:joinable:_:)"),
        ("$s5Pprof7PThreadO5spawn4name8joinable_s6ResultOySuAA15HTTPServerErrorOGSS_SbyyYbctFZSvSgALcfU_ySPys4Int8VGXEfU_",
         "closure #1 in closure #1 in Pprof.PThread.spawn(name:joinable:_:)"),
        ("$s10pprof_demo11spawnThreadyySS_yyYbctFSvSgACcfU_To", "@objc closure #1 in pprof_demo.spawnThread(_:_:)"),
        ("$s5Pprof7PThreadO5spawn4name8joinable_s6ResultOySuAA15HTTPServerErrorOGSS_SbyyYbctFZ6$deferL_yyF",
         "$defer #1 in Pprof.PThread.spawn(name:joinable:_:)"),
        ("$s10pprof_demo12OrderCatalogO10ordersJSON5count4seedSays5UInt8VGSi_s6UInt64VtFZAA0C0VSiXEfU_TA",
         "partial apply for closure #1 in pprof_demo.OrderCatalog.ordersJSON(count:seed:)"),
        // Private discriminators and static members.
        ("$s10pprof_demo12HTTPFrontEndO5serve33_9D652C81A1E7A08C09618AC0A26498DCLLyys5Int32VFZSbSJXEfU_",
         "closure #1 in pprof_demo.HTTPFrontEnd.serve(_:)"),
        ("$s5Pprof7PThreadO5Start33_BFD8DA68AE6904CB7F07B4664104B7DFLLC4name4bodyAFSS_yyYbctcfC",
         "Pprof.PThread.Start.__allocating_init(name:body:)"),
        // Initialisers, subscripts, operators, accessors, generic types.
        ("$s10pprof_demo10DemoRandomV4seedACs6UInt64V_tcfC", "pprof_demo.DemoRandom.init(seed:)"),
        ("$sSayxSicig", "Swift.Array.subscript.getter"),
        ("$sSi1poiyS2i_SitFZ", "Swift.Int.+ infix(_:_:)"),
        ("$sSD4KeysV8IteratorVyxq___GStsSt4next7ElementQzSgyFTW",
         "protocol witness for Swift.Dictionary.Keys.Iterator.next()"),
        ("$sSnyxGSlsSxRzSZ6StrideRpzrlSl9formIndex5aftery0C0Qzz_tFTW",
         "protocol witness for Swift.Range.formIndex(after:)"),
        // Async resume points stand for the function they resume into.
        ("$sScTss5NeverORszABRs_rlE5sleep11nanosecondsys6UInt64V_tYaKFZTQ1_", "Swift.Task.sleep(nanoseconds:)"),
        ("$sScTss5NeverORszABRs_rlE5sleep5until9tolerance5clocky7InstantQyd___8DurationQyd__Sgqd__tYaKs5ClockRd__lFZTQ0_",
         "Swift.Task.sleep(until:tolerance:clock:)"),
    ]

    @Test("real mangled symbols get the expected short names", arguments: cases)
    func shortNames(_ mangled: String, _ expected: String) {
        let full = demangleSwiftSymbol(mangled)
        #expect(full != mangled, "the runtime did not demangle \(mangled)")
        #expect(ShortName.of(full) == expected, "full name: \(full)")
    }

    @Test("C and C++ names: C as it is, C++ demangled without templates and parameters")
    func cNames() {
        #expect(ShortNameCache.shared.short("start_thread") == "start_thread")
        #expect(ShortNameCache.shared.short("[libc.so.6]") == "[libc.so.6]")
        #expect(ShortNameCache.shared.short("pthread_cond_signal@@GLIBC_2.3.2") == "pthread_cond_signal")
        #expect(ShortNameCache.shared.short("_ZNSt6vectorIiSaIiEE9push_backERKi") == "std::vector::push_back()")
        #expect(ShortNameCache.shared.short("_ZN5swift12metadataimpl14ValueWitnessesINS0_9NativeBoxImLm8ELm8ELm8EEEE18initializeWithTakeEPNS_11OpaqueValueES6_PKNS_14TargetMetadataINS_9InProcessEEE")
                == "swift::metadataimpl::ValueWitnesses::initializeWithTake()")
    }

    @Test("no name is longer than the cap, whatever the input")
    func capped() {
        let long = "Module." + String(repeating: "VeryLongTypeName.", count: 20) + "method(label: Swift.Int) -> ()"
        let short = ShortName.of(long)
        #expect(short.count == ShortName.maxLength && short.hasSuffix("..."))
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ab.:(<>)[] ->#,_ in of".utf8)
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...200, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            #expect(ShortName.of(String(decoding: bytes, as: UTF8.self)).count <= ShortName.maxLength)
        }
    }
}
