// swift-tools-version: 6.1
// A Hummingbird 2 app that serves /debug/pprof from swift-pprof, on its own
// router or as a separate PprofServer in the same ServiceGroup. See README.md.
import PackageDescription

let package = Package(
    name: "hummingbird-app",
    platforms: [.macOS(.v14)],
    dependencies: [
        // swift-pprof itself, from this repository. In your app:
        // .package(url: "https://github.com/swift-pprof/swift-pprof.git", from: "0.1.0")
        .package(name: "swift-pprof", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        .executableTarget(
            name: "HummingbirdApp",
            dependencies: [
                .product(name: "Pprof", package: "swift-pprof"),
                .product(name: "PprofServiceLifecycle", package: "swift-pprof"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "HummingbirdAppTests",
            dependencies: [
                "HummingbirdApp",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
