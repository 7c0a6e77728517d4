internal import CPprof
import Glibc

/// Starts raw pthreads. The profiler's threads (HTTP server, CPU collector,
/// request handlers) must keep working when Swift's cooperative pool or the
/// application's event loops are stuck, so they use neither Dispatch nor
/// Swift concurrency.
enum PThread {
    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Runs `body` on a new thread named `name` (15 bytes are kept).
    /// Returns the thread, which must be joined if `joinable`, or a
    /// `.system` error when pthread_create failed.
    static func spawn(name: String, joinable: Bool,
                      _ body: @escaping @Sendable () -> Void) -> Result<pthread_t, HTTPServerError> {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if !joinable {
            pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        }
        let context = HeapSampler.ownWork { Unmanaged.passRetained(Start(name: name, body: body)).toOpaque() }
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            guard let raw else { return nil }
            // The whole thread works for the profiler: none of its
            // allocations is sampled.
            HeapSampler.ownWork {
                let start = Unmanaged<Start>.fromOpaque(raw).takeRetainedValue()
                start.name.withCString { cpprof_set_thread_name($0) }
                start.body()
            }
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<Start>.fromOpaque(context).release()
            return .failure(.system("pthread_create: \(SocketIO.errorText(rc))"))
        }
        return .success(thread)
    }

    static func join(_ thread: pthread_t) {
        _ = pthread_join(thread, nil)
    }
}
