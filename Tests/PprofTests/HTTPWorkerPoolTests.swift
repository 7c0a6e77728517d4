import Glibc
import Testing
@testable import Pprof

/// The threads that run request handlers (`HTTPWorkerPool`).
@Suite struct HTTPWorkerPoolTests {
    /// A server starts the pool's one lasting thread with itself: its first
    /// request wakes that thread instead of waiting for a new one (on a busy
    /// machine a new thread queued behind the running ones).
    @Test func firstJobRunsOnTheThreadStartedAhead() throws {
        let pool = HTTPWorkerPool(maxWorkers: 4, maxPerClient: 4)
        pool.startWaitingThread()
        #expect(pool.threadCount == 1)
        let ranOn = Locked<pthread_t?>(nil)
        let job = HTTPWorkerPool.Job(id: 1, client: "a", connection: HTTPClientConnection()) {
            ranOn.withLock { $0 = pthread_self() }
        }
        #expect(pool.submit(job))
        #expect(waitUntil { ranOn.value != nil }, "the job never ran")
        #expect(pool.threadCount == 1, "the job started a thread of its own")
        #expect(ranOn.value != pthread_self(), "the job ran on the test's thread")
        _ = pool.stop()
        #expect(waitUntil { pool.threadCount == 0 }, "the thread did not end once the pool stopped")
    }

    /// Asking twice (or after a job started one) leaves one thread.
    @Test func startsOneThreadOnly() {
        let pool = HTTPWorkerPool(maxWorkers: 4, maxPerClient: 4)
        pool.startWaitingThread()
        pool.startWaitingThread()
        #expect(pool.threadCount == 1)
        _ = pool.stop()
        pool.startWaitingThread()
        #expect(waitUntil { pool.threadCount == 0 }, "a stopped pool started a thread")
    }

    /// The server's own work (the read-ahead's rehearsal of a first
    /// request) runs on a pool thread, where requests run; a stopped pool
    /// refuses it.
    @Test func ownWorkRunsOnAPoolThread() {
        let pool = HTTPWorkerPool(maxWorkers: 4, maxPerClient: 4)
        pool.startWaitingThread()
        let ranOn = Locked<String?>(nil)
        #expect(pool.run { ranOn.withLock { $0 = currentThreadName() } })
        #expect(waitUntil { ranOn.value != nil }, "the body never ran")
        #expect(ranOn.value == "pprof-worker")
        #expect(pool.threadCount == 1, "the body started a thread of its own")
        _ = pool.stop()
        #expect(!pool.run { ranOn.withLock { $0 = "after stop" } })
        Clock.sleep(.milliseconds(50))
        #expect(ranOn.value == "pprof-worker")
    }
}

/// The calling thread's name, from /proc (Glibc's module lacks pthread_getname_np).
private func currentThreadName() -> String {
    let fd = open("/proc/thread-self/comm", O_RDONLY)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 32)
    let count = read(fd, &bytes, bytes.count)
    guard count > 0 else { return "" }
    return String(decoding: bytes.prefix(count).prefix { $0 != 10 }, as: UTF8.self)
}
