import Hummingbird
import Logging
import Pprof
import PprofServiceLifecycle // PprofServer as a Service
import ServiceLifecycle

@main
struct HummingbirdApp {
    static func main() async throws {
        let logger = Logger(label: "hummingbird-app")
        let pprof = try PprofMode.fromEnvironment()
        let app = buildApplication(pprof: pprof, logger: logger)

        // The app and, when asked for, a separate pprof server in one
        // ServiceGroup: both start together and stop on SIGINT/SIGTERM.
        var services: [any Service] = [app]
        if case .server(let configuration) = pprof {
            services.append(PprofServer(configuration: configuration, logger: logger))
        }
        let group = ServiceGroup(configuration: .init(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
