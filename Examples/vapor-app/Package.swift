// swift-tools-version: 6.1
// A Vapor 4 app that serves /debug/pprof from swift-pprof, on its own router
// or on a separate loopback listener. See README.md.
import PackageDescription

let package = Package(
    name: "vapor-app",
    platforms: [.macOS(.v13)],
    dependencies: [
        // swift-pprof itself, from this repository. In your app:
        // .package(url: "https://github.com/swift-pprof/swift-pprof.git", from: "0.1.0")
        .package(name: "swift-pprof", path: "../.."),
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
    ],
    targets: [
        .executableTarget(
            name: "VaporApp",
            dependencies: [
                .product(name: "Pprof", package: "swift-pprof"),
                .product(name: "Vapor", package: "vapor"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "VaporAppTests",
            dependencies: [
                "VaporApp",
                .product(name: "XCTVapor", package: "vapor"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
