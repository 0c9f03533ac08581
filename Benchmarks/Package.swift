// swift-tools-version:6.2
// ops/bench's load generator, a package of its own so that `swift build --build-tests` of Clapper
// never compiles it: `swift build -c release --package-path Benchmarks` (ops/bench does).
import PackageDescription

let package = Package(
    name: "ClapperBenchmarks",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "clapper-bench", targets: ["clapper-bench"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // SSE streams, signed webhooks and timed POSTs on one event loop (loopback only).
        .executableTarget(
            name: "clapper-bench",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("MemberImportVisibility"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
