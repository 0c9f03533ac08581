// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "hiredis-proto",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Clapper's real client (product Redis), by path; read only.
        .package(path: "../../.."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // hiredis's async API on one thread running our own epoll loop (the "adapter").
        .target(
            name: "CHiredisLoop",
            linkerSettings: [.linkedLibrary("hiredis")]
        ),
        .executableTarget(
            name: "bench",
            dependencies: [
                "CHiredisLoop",
                .product(name: "Redis", package: "main"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
