import Glibc
import Testing
@testable import Pprof

/// The symbol read-ahead (`SymbolPreload`): on by default, targeted at the
/// threads' current stacks, off with `PPROF_SYMBOL_PRELOAD=0`.
@Suite struct SymbolReadAheadTests {
    @Test func environmentChoosesTheMode() {
        #expect(SymbolPreload.mode(environmentValue: nil) == .targeted)
        #expect(SymbolPreload.mode(environmentValue: "") == .targeted)
        #expect(SymbolPreload.mode(environmentValue: "1") == .full)
        for off in ["0", "false", "no", "off", "OFF"] {
            #expect(SymbolPreload.mode(environmentValue: off) == .off)
        }
    }

    /// Without any request, the default read-ahead loads the tables the
    /// threads' stacks need and caches their frames; a stack it captured
    /// is then answered from the cache, with the frames a lookup on first
    /// use gives.
    @Test func targetedReadAheadLoadsTablesWithoutARequest() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let readEnd = fds[0]
        // A thread blocked in read(2): its stack is the same in every capture.
        let blocked = try PThread.spawn(name: "ra-test-blocked", joinable: true) {
            var byte: UInt8 = 0
            _ = read(readEnd, &byte, 1)
        }.get()
        defer {
            var byte: UInt8 = 1
            _ = write(fds[1], &byte, 1)
            PThread.join(blocked)
        }
        // Until it sleeps in read(2) (a dump reads it from /proc then), so
        // that the read-ahead and the dump below see the same stack.
        for _ in 0..<500 {
            if ThreadDumper.dump().contains(where: { $0.name == "ra-test-blocked" && $0.answered && $0.state == "sleeping" }) {
                break
            }
            Clock.sleep(.milliseconds(10))
        }

        let symbolizer = Symbolizer()
        #expect(symbolizer.memoryUsage.total == 0)
        let thread = try #require(SymbolPreload.start(.targeted, symbolizer: symbolizer, delay: .zero, joinable: true))
        PThread.join(thread)

        let usage = symbolizer.memoryUsage
        #expect(usage.symbols > 0)
        #expect(usage.cache > 0)
        let cached = symbolizer.cacheUsage.addresses
        #expect(cached > 0)

        let stack = try #require(ThreadDumper.dump().first { $0.name == "ra-test-blocked" && $0.answered }?.stack)
        let addresses = GoroutineProfile.adjusted(stack)
        let ahead = symbolizer.frames(at: addresses)
        #expect(symbolizer.cacheUsage.addresses == cached, "the blocked thread's stack was read ahead")
        let onFirstUse = Symbolizer().frames(at: addresses)
        for address in addresses {
            #expect(ahead[address] == onFirstUse[address], "0x\(String(address, radix: 16))")
        }
        #expect(addresses.contains { !(ahead[$0] ?? []).isEmpty })
    }

    /// The read-ahead reads the units of the code serving a request through
    /// one function defined in each file (a C-convention closure, emitted
    /// in its file's unit): each address must be that function, not one
    /// merged with another's.
    @Test func requestPathAddressesAreTheirFilesFunctions() {
        let names = ["httpWorkerPoolUnit", "httpServerUnit", "pprofServerUnit", "pprofHandlerUnit",
                     "pprofEndpointsUnit", "namedProfileEndpointUnit", "threadProfilesUnit", "cpuProfileEndpointUnit"]
        let addresses = SymbolPreload.requestPathAddresses
        #expect(addresses.count == names.count)
        #expect(Set(addresses).count == addresses.count)
        let symbolizer = Symbolizer()
        for (address, name) in zip(addresses, names) {
            let function = symbolizer.frames(at: address).last?.function ?? ""
            #expect(function.contains(name), "0x\(String(address, radix: 16)) is \(function)")
        }
    }

    /// The read-ahead's rehearsal of a first `/goroutine?debug=2` renders
    /// the capture it is given (it takes no dump at its low priority) through
    /// the endpoints and the symbolizer, whose cache then holds that
    /// capture's frames, as after a request.
    @Test func rehearsalRendersTheGivenCaptureThroughTheSymbolizer() throws {
        let capture = ThreadDumper.dump()
        let one = try #require(capture.first { $0.answered && !$0.stack.isEmpty })
        let text = GoroutineProfile(captured: [one]).text(debug: 2, symbols: Symbolizer())
        #expect(text.hasPrefix("goroutine \(one.tid) "), "\(text.prefix(200))")
        #expect(text.components(separatedBy: "\ngoroutine ").count == 1, "one thread's block only")

        let symbolizer = Symbolizer()
        #expect(symbolizer.cacheUsage.addresses == 0)
        SymbolPreload.rehearse([one], symbolizer: symbolizer)
        let cached = symbolizer.cacheUsage.addresses
        #expect(cached > 0)
        _ = symbolizer.frames(at: GoroutineProfile.adjusted(one.stack))
        #expect(symbolizer.cacheUsage.addresses == cached, "the capture's frames were cached by the rehearsal")
    }

    /// What a read-ahead inflated (libc's compressed line section, from
    /// libc6-dbg) stays through the rehearsal's batch, which reads no new
    /// unit; the next batch that reads none of libc's units lets it go.
    @Test func rehearsalKeepsWhatTheReadAheadInflated() throws {
        let getpidAddress = unsafeBitCast(getpid as @convention(c) () -> pid_t, to: UnsafeRawPointer.self)
        let address = UInt64(UInt(bitPattern: getpidAddress))
        let symbolizer = Symbolizer()
        func held() -> Bool { symbolizer.state.withLock { !$0.inflatedHeld.isEmpty } }
        symbolizer.readAhead([address])
        try #require(held(), "libc's line section is read inflated (libc6-dbg, Scripts/install-deps.sh)")
        symbolizer.holdingInflatedSections { _ = symbolizer.frames(at: [address]) }
        #expect(held())
        _ = symbolizer.frames(at: [address])
        #expect(!held())
    }

    /// A serving `PprofServer` offers its worker threads to the rehearsal
    /// (which then runs where requests run), and withdraws them when it stops.
    @Test func servingServerOffersItsWorkers() throws {
        let server = PprofServer(configuration: .init(host: "127.0.0.1", port: 0))
        let id = ObjectIdentifier(server)
        #expect(!SymbolPreload.workerOwners.contains(id))
        try server.start()
        #expect(SymbolPreload.workerOwners.contains(id))
        server.stop()
        #expect(!SymbolPreload.workerOwners.contains(id))
    }

    @Test func offSwitchStartsNothing() {
        let symbolizer = Symbolizer()
        let mode = SymbolPreload.mode(environmentValue: "0")
        #expect(SymbolPreload.start(mode, symbolizer: symbolizer, delay: .zero, joinable: true) == nil)
        #expect(symbolizer.memoryUsage.total == 0)
        #expect(symbolizer.cacheUsage.addresses == 0)
    }
}
