// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-pprof",
    products: [
        .library(name: "Pprof", targets: ["Pprof"]),
        // Opt-in: PprofServer as a swift-service-lifecycle Service.
        .library(name: "PprofServiceLifecycle", targets: ["PprofServiceLifecycle"]),
    ],
    traits: [
        .trait(
            name: "HeapProfiling",
            description: "Interpose malloc and friends to serve the heap and allocs profiles. "
                + "Without it no allocator symbol is defined and the heap profile is unavailable."
        ),
        .default(enabledTraits: ["HeapProfiling"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        // Only for `swift package generate-documentation` (Scripts/build-docs.sh).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Everything that runs inside a signal handler or an allocator hook lives here, in C.
        .target(
            name: "CPprof",
            cSettings: [
                .define("_GNU_SOURCE"),
                .define("CPPROF_HEAP_PROFILING", .when(traits: ["HeapProfiling"])),
            ],
            linkerSettings: [.linkedLibrary("z"), .linkedLibrary("m")]
        ),
        .target(
            name: "Pprof",
            dependencies: [
                "CPprof",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "PprofServiceLifecycle",
            dependencies: ["Pprof", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
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
        // The C test hooks' declarations, for PprofTests only (defined in CPprof).
        .target(name: "CPprofTestHooks", path: "Tests/CPprofTestHooks"),
        .testTarget(
            name: "PprofTests",
            dependencies: [
                "Pprof", "CPprof", "CPprofTestHooks", "PprofServiceLifecycle",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
