// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-pprof",
    products: [
        .library(name: "Pprof", targets: ["Pprof"]),
    ],
    targets: [
        // Everything that runs inside a signal handler lives here, in C.
        .target(
            name: "CPprof",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("z")]
        ),
        .target(
            name: "Pprof",
            dependencies: ["CPprof"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "pprof-demo",
            dependencies: ["Pprof"],
            path: "Examples/pprof-demo",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Measurements, not tests: ./Scripts/benchmark.sh, Docs/Benchmarks.md.
        // CPprof only for the handler microbenchmark's hooks (and gunzip).
        .executableTarget(
            name: "pprof-benchmarks",
            dependencies: ["Pprof", "CPprof"],
            path: "Benchmarks/pprof-benchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PprofTests",
            dependencies: ["Pprof", "CPprof"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
