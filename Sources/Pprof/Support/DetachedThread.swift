import CPprof
import Glibc

/// Starts a detached pthread running `body`: the profiler's own threads must
/// not depend on Dispatch or Swift's cooperative pool, which may be stuck
/// exactly when someone asks for a profile.
enum DetachedThread {
    private final class Box {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }

    /// Returns false if the thread could not be created.
    @discardableResult
    static func start(name: String, _ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Box(name: name, body: body))
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attr, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.name.withCString { cpprof_set_thread_name($0) }
            box.body()
            return nil
        }, box.toOpaque())
        if rc != 0 { box.release() }
        return rc == 0
    }
}
