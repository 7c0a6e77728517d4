import Glibc
import Synchronization

/// Recognisable CPU-heavy work for the demo, each kind on its own named
/// thread, so that a profile shows where the time goes at a glance.
enum DemoWorkloads {
    static let checksum = Atomic<UInt64>(0)

    /// Starts the demo's worker threads; they run until the process exits.
    static func startAll() {
        spawn("demo-hash") { while true { checksum.wrappingAdd(HashWorker.hashBlocks(count: 2_000), ordering: .relaxed) } }
        spawn("demo-sort") { while true { checksum.wrappingAdd(SortWorker.sortRandomArrays(count: 20), ordering: .relaxed) } }
        spawn("demo-primes") { while true { checksum.wrappingAdd(PrimeWorker.countPrimes(below: 200_000), ordering: .relaxed) } }
        spawn("demo-text") {
            while true {
                checksum.wrappingAdd(TextWorker.renderReport(rows: 500), ordering: .relaxed)
                usleep(2_000) // mostly busy, sometimes idle: a realistic mix
            }
        }
    }

    private final class Body: Sendable {
        let name: String
        let run: @Sendable () -> Void
        init(_ name: String, _ run: @escaping @Sendable () -> Void) { self.name = name; self.run = run }
    }

    private static func spawn(_ name: String, _ run: @escaping @Sendable () -> Void) {
        let body = Unmanaged.passRetained(Body(name, run))
        var thread = pthread_t()
        pthread_create(&thread, nil, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            nameCurrentThread(body.name)
            body.run()
            return nil
        }, body.toOpaque())
        pthread_detach(thread)
    }
}

/// FNV-1a over pseudo-random blocks: pure integer work.
enum HashWorker {
    @inline(never)
    static func hashBlocks(count: Int) -> UInt64 {
        var state: UInt64 = 0x243F6A8885A308D3
        var hash: UInt64 = 0xcbf29ce484222325
        for _ in 0..<count {
            for _ in 0..<64 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                hash = (hash ^ (state >> 33)) &* 0x100000001b3
            }
        }
        return hash
    }
}

/// Sorting fresh arrays: allocation plus comparisons.
enum SortWorker {
    @inline(never)
    static func sortRandomArrays(count: Int) -> UInt64 {
        var total: UInt64 = 0
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<count {
            var values = (0..<2_000).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) }
            values.sort()
            total &+= UInt64(values[values.count / 2])
        }
        return total
    }
}

/// Trial division: branchy arithmetic.
enum PrimeWorker {
    @inline(never)
    static func countPrimes(below limit: Int) -> UInt64 {
        var count: UInt64 = 0
        var n = 2
        while n < limit {
            if isPrime(n) { count += 1 }
            n += 1
        }
        return count
    }

    @inline(never)
    static func isPrime(_ n: Int) -> Bool {
        if n < 4 { return n > 1 }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}

/// String building, as a server rendering responses does.
enum TextWorker {
    @inline(never)
    static func renderReport(rows: Int) -> UInt64 {
        var text = ""
        for i in 0..<rows {
            text += "row \(i): value=\(i &* 7919 % 1000) status=\(i % 3 == 0 ? "ok" : "pending")\n"
        }
        return UInt64(text.utf8.count)
    }
}

/// Names the calling thread (what `top -H` and thread dumps show).
func nameCurrentThread(_ name: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY)
    guard fd >= 0 else { return }
    _ = name.withCString { write(fd, $0, min(strlen($0), 15)) }
    close(fd)
}
