// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-pprof",
    products: [
        .library(name: "Pprof", targets: ["Pprof"]),
    ],
    traits: [
        .trait(
            name: "HeapProfiling",
            description: "Interpose malloc and friends to serve the heap and allocs profiles. "
                + "Without it no allocator symbol is defined and the heap profile is unavailable."
        ),
        .default(enabledTraits: ["HeapProfiling"]),
    ],
    targets: [
        // Everything that runs inside a signal handler lives here, in C.
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
            dependencies: ["CPprof"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "pprof-demo",
            dependencies: ["Pprof"],
            path: "Examples/pprof-demo",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PprofTests",
            dependencies: ["Pprof", "CPprof"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
