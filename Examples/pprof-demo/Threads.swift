import Glibc

/// Starts a detached, named thread running `body` (what `top -H`, thread dumps
/// and `/debug/pprof/goroutine?debug=2` show as its name).
func spawnThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }
    let box = Unmanaged.passRetained(Box(name, body))
    var thread = pthread_t()
    let status = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        nameCurrentThread(box.name)
        box.body()
        return nil
    }, box.toOpaque())
    if status == 0 {
        pthread_detach(thread)
    } else {
        box.release()
        printError("pprof-demo: cannot start thread \(name): error \(status)")
    }
}

/// Names the calling thread (at most 15 bytes are kept).
func nameCurrentThread(_ name: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY)
    guard fd >= 0 else { return }
    _ = name.withCString { write(fd, $0, min(strlen($0), 15)) }
    close(fd)
}

/// Sleeps about `milliseconds`. nanosleep returns early with EINTR whenever a
/// CPU profile or a thread dump signals this thread; a load generator does
/// not mind, so there is no retry.
func sleepBriefly(milliseconds: Int) {
    var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    _ = nanosleep(&request, nil)
}

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Unbuffered, so the banner shows even when stdout is a pipe and we never exit.
func printOut(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

/// A small, fast, deterministic generator (SplitMix64) for the demo's data.
struct DemoRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
