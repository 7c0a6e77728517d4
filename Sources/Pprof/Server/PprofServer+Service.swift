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
