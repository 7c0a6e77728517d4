/// The threads that run request handlers, so that the event loop never
/// waits for one: a handler may block for a whole profile window, walk
/// every thread's stack or symbolise thousands of addresses.
///
/// - At most `maxWorkers` threads, started when work waits and no thread is
///   free, and when the memory for one more is there (`MemoryHeadroom`: a
///   thread's stack and a request's estimate; else the job waits for a
///   running thread). A thread idle for `idleMilliseconds` ends, giving its
///   stack back; the last one stays.
/// - Jobs run in the order they came, except that a client (peer address)
///   never has more than `maxPerClient` jobs running: its next one waits,
///   and jobs of other clients go first.
/// - Raw pthreads, neither Dispatch nor Swift concurrency: the profiler
///   must answer while the app's pools are stuck.
final class HTTPWorkerPool: @unchecked Sendable {
    /// One request to answer.
    struct Job {
        /// Unique among queued jobs (the connection's number).
        let id: Int
        /// Who sent it (for the per-client limit).
        let client: String
        /// Its connection, for closing it if the job never runs; nil for
        /// the server's own work (`run(_:)`).
        let connection: HTTPClientConnection?
        let run: @Sendable () -> Void
    }

    private let maxWorkers: Int
    private let maxPerClient: Int
    private let idleMilliseconds: Int
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var queue: [Job] = []
    private var running: [String: Int] = [:]
    private var workers = 0
    private var busy = 0
    private var stopped = false

    init(maxWorkers: Int, maxPerClient: Int, idleMilliseconds: Int = 5000) {
        self.maxWorkers = max(1, maxWorkers)
        self.maxPerClient = max(1, maxPerClient)
        self.idleMilliseconds = max(1, idleMilliseconds)
    }


    /// Queues a job, starting a thread for it if none is free. Returns false
    /// (the job is not queued) when the pool is stopped, or has no thread at
    /// all and the system refused to start one.
    func submit(_ job: Job) -> Bool {
        let spawn: Bool? = lock.withLock {
            guard !stopped else { return nil }
            queue.append(job)
            lock.broadcast()
            guard queue.count > workers - busy, workers < maxWorkers else { return false }
            workers += 1
            return true
        }
        guard let spawn else { return false }
        guard spawn else { return true }
        // Short of memory, a pool with a thread leaves the job to it.
        if !MemoryHeadroom.isAvailable(MemoryHeadroom.threadBytes + MemoryHeadroom.requestBytes) {
            let hasThread = lock.withLock {
                guard workers > 1 else { return false }
                workers -= 1
                return true
            }
            if hasThread { return true }
        }
        if case .success = PThread.spawn(name: "pprof-worker", joinable: false, { [self] in work() }) {
            return true
        }
        // No thread: a pool that still has one gets to the job later.
        return lock.withLock {
            workers -= 1
            guard workers == 0 else { return true }
            queue.removeAll { $0.id == job.id }
            return false
        }
    }

    /// Runs `body` on a pool thread, queued as a request would be: the
    /// server's own work, with no connection (the symbol read-ahead's
    /// rehearsal of a first request, so that it runs where requests run, at
    /// their priority). Returns false if the pool is stopped or no thread
    /// could start.
    func run(_ body: @escaping @Sendable () -> Void) -> Bool {
        submit(Job(id: -1, client: "", connection: nil, run: body))
    }

    /// Threads started and not yet ended.
    var threadCount: Int { lock.withLock { workers } }

    /// Starts the thread that stays (the pool never ends its last one)
    /// before any job comes, so that the first request wakes a waiting
    /// thread instead of creating one: on a busy machine the scheduler
    /// places a new thread behind the running ones, and it waited a time
    /// slice or more (Docs/Benchmarks.md, "First scrape"). Does nothing if
    /// a thread is there or the system refuses one (the first job starts it).
    func startWaitingThread() {
        let spawn = lock.withLock {
            guard !stopped, workers == 0 else { return false }
            workers += 1
            return true
        }
        guard spawn else { return }
        if case .success = PThread.spawn(name: "pprof-worker", joinable: false, { [self] in work() }) { return }
        lock.withLock { workers -= 1 }
    }

    /// Stops taking jobs; returns the jobs that had not started (the caller
    /// closes their connections). Running jobs finish; then the threads end.
    func stop() -> [Job] {
        lock.withLock {
            stopped = true
            let dropped = queue
            queue = []
            lock.broadcast()
            return dropped
        }
    }

    private func work() {
        while let job = next() {
            job.run()
            lock.withLock {
                busy -= 1
                running[job.client, default: 1] -= 1
                if running[job.client] == 0 { running[job.client] = nil }
                // A job of this client may now run on a waiting thread.
                lock.broadcast()
            }
        }
    }

    /// The oldest job whose client is under its limit; nil once stopped.
    private func next() -> Job? {
        lock.withLock {
            while true {
                if stopped {
                    workers -= 1
                    return nil
                }
                if let index = queue.firstIndex(where: { running[$0.client, default: 0] < maxPerClient }) {
                    let job = queue.remove(at: index)
                    running[job.client, default: 0] += 1
                    busy += 1
                    return job
                }
                if !lock.wait(milliseconds: idleMilliseconds), workers > 1,
                   !queue.contains(where: { running[$0.client, default: 0] < maxPerClient }) {
                    workers -= 1  // idle: give the stack back
                    return nil
                }
            }
        }
    }
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let httpWorkerPoolUnit: @convention(c) () -> Int = { 1 }
}
