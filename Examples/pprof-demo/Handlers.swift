// The work behind the demo's API, one recognisable function per kind of work,
// so that each shows up under its own name in a profile or a thread dump.
import Foundation
import Glibc
import Synchronization

// MARK: - JSON encoding: GET /orders

struct LineItem: Codable {
    var sku: String
    var quantity: Int
    var unitPrice: Double
}

struct Order: Codable {
    var id: Int
    var customer: String
    var status: String
    var items: [LineItem]
    var total: Double
}

enum OrderCatalog {
    static let customers = ["ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances"]
    static let statuses = ["pending", "paid", "shipped", "delivered"]

    /// `count` orders as JSON, made and encoded afresh as a real endpoint would.
    @inline(never)
    static func ordersJSON(count: Int, seed: UInt64) -> [UInt8] {
        var random = DemoRandom(seed: seed)
        let orders = (0..<count).map { makeOrder(id: $0, random: &random) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(orders)) ?? Data())
    }

    @inline(never)
    static func makeOrder(id: Int, random: inout DemoRandom) -> Order {
        let items = (0..<Int.random(in: 1...8, using: &random)).map { _ in
            LineItem(sku: "SKU-\(Int.random(in: 10_000...99_999, using: &random))",
                     quantity: Int.random(in: 1...5, using: &random),
                     unitPrice: Double(Int.random(in: 99...99_999, using: &random)) / 100)
        }
        return Order(id: id, customer: customers.randomElement(using: &random)!,
                     status: statuses.randomElement(using: &random)!, items: items,
                     total: items.reduce(0) { $0 + Double($1.quantity) * $1.unitPrice })
    }
}

// MARK: - Hashing: POST /hash

/// SHA-256 (FIPS 180-4), written out so that its compression function is
/// what a CPU profile of `/hash` shows.
enum SHA256 {
    /// The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    static let roundConstants: [UInt32] = firstPrimes(64).map { fractionBits(cbrt(Double($0))) }
    /// The same of the square roots of the first 8 primes.
    static let initialState: [UInt32] = firstPrimes(8).map { fractionBits(sqrt(Double($0))) }

    @inline(never)
    static func digest(_ message: [UInt8]) -> [UInt8] {
        var state = initialState
        var padded = message
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        let bits = UInt64(message.count) &* 8
        for shift in stride(from: 56, through: 0, by: -8) { padded.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        var w = [UInt32](repeating: 0, count: 64)
        for blockStart in stride(from: 0, to: padded.count, by: 64) {
            compress(&state, block: padded[blockStart..<blockStart + 64], schedule: &w)
        }
        return state.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> UInt32(24 - 8 * $0)) } }
    }

    @inline(never)
    static func compress(_ state: inout [UInt32], block: ArraySlice<UInt8>, schedule w: inout [UInt32]) {
        let base = block.startIndex
        for i in 0..<16 {
            w[i] = UInt32(block[base + 4 * i]) << 24 | UInt32(block[base + 4 * i + 1]) << 16
                | UInt32(block[base + 4 * i + 2]) << 8 | UInt32(block[base + 4 * i + 3])
        }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, h) = (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7])
        for i in 0..<64 {
            let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ roundConstants[i] &+ w[i]
            let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
            (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
        state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }

    private static func fractionBits(_ x: Double) -> UInt32 {
        UInt32((x - x.rounded(.down)) * 4_294_967_296)
    }

    private static func firstPrimes(_ n: Int) -> [Int] {
        var primes: [Int] = []
        var candidate = 2
        while primes.count < n {
            if primes.allSatisfy({ candidate % $0 != 0 }) { primes.append(candidate) }
            candidate += 1
        }
        return primes
    }
}

// MARK: - Allocation churn: GET /report

enum ReportRenderer {
    /// A text report built from many short-lived strings and arrays: lots of
    /// allocations (see `/debug/pprof/allocs`), little that stays.
    @inline(never)
    static func render(rows: Int, seed: UInt64) -> [UInt8] {
        var random = DemoRandom(seed: seed)
        var lines: [String] = []
        for row in 0..<rows {
            let fields = (0..<6).map { column in "c\(column)=\(Int.random(in: 0...9_999, using: &random))" }
            lines.append("row \(row): " + fields.sorted().joined(separator: " "))
        }
        lines.sort()
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }
}

// MARK: - A cache that grows: POST /login

/// Sessions kept in memory, as a careless server would: each login adds one,
/// until `capacityBytes`; then the oldest go. `/debug/pprof/heap` shows it.
final class SessionCache: Sendable {
    static let shared = SessionCache(capacityBytes: 96 << 20)

    final class Session: Sendable {
        let user: String
        let token: String
        let profile: [UInt8]   // what the server keeps per session: preferences, permissions, ...
        init(user: String, token: String, profile: [UInt8]) { self.user = user; self.token = token; self.profile = profile }
    }

    private struct State {
        var sessions: [String: Session] = [:]
        var order: [String] = []   // oldest first
        var oldest = 0
        var bytes = 0
    }

    let capacityBytes: Int
    private let state = Mutex(State())

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    /// Creates and keeps a session; returns its token and the cache's size.
    @inline(never)
    func login(user: String, seed: UInt64) -> (token: String, sessions: Int, bytes: Int) {
        let session = Self.makeSession(user: user, seed: seed)
        return state.withLock { s in
            s.sessions[session.token] = session
            s.order.append(session.token)
            s.bytes += session.profile.count
            while s.bytes > capacityBytes, s.oldest < s.order.count {
                if let evicted = s.sessions.removeValue(forKey: s.order[s.oldest]) { s.bytes -= evicted.profile.count }
                s.oldest += 1
            }
            if s.oldest > 4096 { s.order.removeFirst(s.oldest); s.oldest = 0 }
            return (session.token, s.sessions.count, s.bytes)
        }
    }

    @inline(never)
    static func makeSession(user: String, seed: UInt64) -> Session {
        var random = DemoRandom(seed: seed)
        let token = SHA256.hex(SHA256.digest(Array("\(user):\(seed)".utf8)))
        let profile = makeProfileBlob(size: Int.random(in: 2_048...6_144, using: &random), random: &random)
        return Session(user: user, token: token, profile: profile)
    }

    /// The bytes a session keeps: what `/debug/pprof/heap` shows growing.
    @inline(never)
    static func makeProfileBlob(size: Int, random: inout DemoRandom) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            for i in 0..<size { buffer[i] = UInt8(truncatingIfNeeded: random.next()) }
            initialized = size
        }
    }
}

// MARK: - A lock-contended path: every request, GET /stats

/// Request latencies per route behind one process-wide lock, held while the
/// percentiles are recomputed: with several threads it is contended, and a
/// thread dump shows threads waiting in `pthread_mutex_lock`.
final class LatencyRegistry: @unchecked Sendable {   // the pthread mutex guards every field
    static let shared = LatencyRegistry()

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var windows: [String: [Int]] = [:]
    private var percentiles: [String: (p50: Int, p99: Int)] = [:]
    private var recorded = 0
    private let flusher = PendingFlush()

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    @inline(never)
    func record(route: String, microseconds: Int) {
        pthread_mutex_lock(mutex)
        windows[route, default: []].append(microseconds)
        if windows[route]!.count > 4096 { windows[route]!.removeFirst(2048) }
        // Recomputed under the lock on every request: the contention is the point.
        let sorted = windows[route]!.sorted()
        percentiles[route] = (sorted[sorted.count / 2], sorted[sorted.count * 99 / 100])
        recorded += 1
        pthread_mutex_unlock(mutex)
        flusher.add(1)
    }

    @inline(never)
    func summaryJSON() -> [UInt8] {
        pthread_mutex_lock(mutex)
        let snapshot = percentiles
        let total = recorded
        pthread_mutex_unlock(mutex)
        let routes = snapshot.keys.sorted().map { route in
            "\"\(route)\":{\"p50_us\":\(snapshot[route]!.p50),\"p99_us\":\(snapshot[route]!.p99)}"
        }
        return Array("{\"requests\":\(total),\"routes\":{\(routes.joined(separator: ","))}}\n".utf8)
    }

    /// The flusher thread's wait: a condition variable, signalled every 2,000 requests.
    func waitForBatch() -> Int { flusher.waitForBatch(of: 2_000) }
}

/// A counter a thread waits on with `pthread_cond_wait`.
final class PendingFlush: @unchecked Sendable {   // the mutex guards `pending`
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let condition: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)
    private var pending = 0

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    func add(_ n: Int) {
        pthread_mutex_lock(mutex)
        pending += n
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    @inline(never)
    func waitForBatch(of size: Int) -> Int {
        pthread_mutex_lock(mutex)
        while pending < size { pthread_cond_wait(condition, mutex) }
        let taken = pending
        pending = 0
        pthread_mutex_unlock(mutex)
        return taken
    }
}

// MARK: - A thread that blocks: POST /jobs

/// Background jobs handed to one worker through a pipe: the worker spends
/// most of its life blocked in `read`, which a thread dump shows.
final class JobQueue: Sendable {
    static let shared = JobQueue()

    private let readEnd: Int32
    private let writeEnd: Int32
    let completed = Atomic<Int>(0)

    init() {
        var fds: [Int32] = [0, 0]
        if pipe(&fds) != 0 { fatalError("pipe: \(errno)") }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    /// Queues a job; false if the queue is full (the pipe's buffer).
    func submit(_ job: UInt8) -> Bool {
        var byte = job
        let flags = fcntl(writeEnd, F_GETFL)
        _ = fcntl(writeEnd, F_SETFL, flags | O_NONBLOCK)
        return write(writeEnd, &byte, 1) == 1
    }

    /// The worker: runs forever on its own thread.
    func runWorker() {
        while true {
            let job = waitForJob()
            rebuildSearchIndex(seed: UInt64(job))
            completed.add(1, ordering: .relaxed)
        }
    }

    @inline(never)
    func waitForJob() -> UInt8 {
        var byte: UInt8 = 0
        while true {
            let n = read(readEnd, &byte, 1)
            if n == 1 { return byte }
            if n < 0 && errno == EINTR { continue }
            fatalError("job pipe closed")
        }
    }

    /// The job: tokenise some generated text and build an inverted index.
    @inline(never)
    func rebuildSearchIndex(seed: UInt64) {
        var random = DemoRandom(seed: seed)
        let words = ["swift", "pprof", "profile", "heap", "thread", "lock", "cache", "json", "hash", "server"]
        var index: [String: [Int]] = [:]
        for document in 0..<500 {
            for _ in 0..<20 { index[words.randomElement(using: &random)!, default: []].append(document) }
        }
        _ = index.values.reduce(0) { $0 + $1.count }
    }
}
