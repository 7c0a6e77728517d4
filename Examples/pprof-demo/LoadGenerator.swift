/// Threads that call the API's handlers in a loop, so that profiles have
/// something to show from the first second, without any client.
enum LoadGenerator {
    /// A request mix: mostly JSON and reports, some hashing, a steady trickle of logins.
    static let mix: [(weight: Int, method: String, path: String, query: String)] = [
        (30, "GET", "/orders", "count=20"),
        (20, "GET", "/report", "rows=150"),
        (15, "GET", "/hash", "size=32768"),
        (25, "POST", "/login", ""),
        (8, "GET", "/stats", ""),
        (2, "POST", "/jobs", ""),
    ]

    static func start(threads: Int) {
        let total = mix.reduce(0) { $0 + $1.weight }
        for n in 0..<threads {
            spawnThread("demo-load-\(n + 1)") {
                var random = DemoRandom(seed: UInt64(n + 1) &* 0x9E3779B97F4A7C15)
                var sent = 0
                while true {
                    var pick = Int.random(in: 0..<total, using: &random)
                    let request = mix.first { pick -= $0.weight; return pick < 0 }!
                    _ = DemoAPI.handle(method: request.method, path: request.path, query: request.query, body: [])
                    // Mostly busy, as a loaded server is; a short pause now and then.
                    sent += 1
                    if sent % 8 == 0 { sleepBriefly(milliseconds: 1) }
                }
            }
        }
    }

    /// The background threads that mostly wait: one on a pipe, one on a condition variable.
    static func startBackgroundThreads() {
        spawnThread("demo-jobs") { JobQueue.shared.runWorker() }
        spawnThread("demo-flusher") {
            while true {
                _ = LatencyRegistry.shared.waitForBatch()
                _ = LatencyRegistry.shared.summaryJSON()   // "ship" the percentiles somewhere
            }
        }
    }
}
