// The swift-service-lifecycle integration, in a product of its own so that
// apps which only start the server do not build swift-service-lifecycle
// (and with it swift-collections and swift-async-algorithms).
import Pprof
import ServiceLifecycle

extension PprofServer: Service {
    /// Runs the server as part of a `ServiceGroup`: starts it (unless already
    /// started), serves until graceful shutdown or cancellation, then stops
    /// it: open connections are closed and any CPU sampling they started ends.
    public func run() async throws {
        if !isStarted { try start() }
        // Returns on graceful shutdown; throws CancellationError on cancellation.
        try? await gracefulShutdown()
        stop()
    }
}
