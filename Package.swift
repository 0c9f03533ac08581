// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// Tests import freely from what their dependencies re-export.
let testSwiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

/// Makes the executables' curl_url, curl_url_cleanup and curl_free (Sources/CurlURLFix) the ones the
/// dynamic linker binds FoundationNetworking's calls to.
let exportCurlURLFix: [LinkerSetting] = [
    .unsafeFlags(["curl_url", "curl_url_cleanup", "curl_free"].flatMap { ["-Xlinker", "--export-dynamic-symbol=\($0)"] }),
]

let package = Package(
    name: "Clapper",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "clapper", targets: ["clapper"]),
        .executable(name: "fal-sim", targets: ["fal-sim"]),
        .library(name: "Redis", targets: ["Redis"]),
        .library(name: "Fal", targets: ["Fal"]),
        .library(name: "S3", targets: ["S3"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // NIOHTTPTypes for the request-head timeout handler (Hummingbird already builds it).
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Users' bearer JWTs (HS256 claims, JWKS keys and RS256/ES256/EdDSA signatures).
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        // jwt-kit's base64 (already built for it): Clapper's base64url too.
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
        // ClapperConfiguration's reader. Hummingbird already builds it, with no traits: none here either.
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: []),
        // The flags of `clapper` (ClapperOptions): generated --help, unknown flags refused.
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // Only the tests use it directly (streaming SSE reads); HummingbirdTesting already pulls it in.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // Spans of a job's path (Hummingbird already builds it).
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // Spans out over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Only that trait: no gRPC.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .target(
            name: "Redis",
            dependencies: [
                "CHiredis",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // URLSession on Linux leaks every request's parsed URL (curl_free where curl_url_cleanup is
        // due); this module's curl_free releases it whole. See its source.
        .target(
            name: "CurlURLFix",
            linkerSettings: [.linkedLibrary("curl")]
        ),
        .target(
            name: "Fal",
            dependencies: [
                "CurlURLFix",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                // ConnectGuardTransport's probe: a TCP connect outside URLSession.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // S3 requests (AWS Signature Version 4, multipart upload) as values: no I/O in it.
        .target(
            name: "S3",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FalSim",
            dependencies: [
                // Its webhooks go out through URLSession too.
                "CurlURLFix",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fal-sim",
            dependencies: ["FalSim"],
            swiftSettings: swiftSettings,
            linkerSettings: exportCurlURLFix
        ),
        .target(
            name: "Clapper",
            dependencies: [
                "Redis",
                "Fal",
                "S3",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                // Event streams leave Hummingbird's connection handling (StreamingHTTP1Channel).
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            resources: [.copy("Public")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "clapper",
            dependencies: [
                "Clapper",
                "Fal",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: exportCurlURLFix
        ),
        .target(
            name: "TestSupport",
            dependencies: [
                "Redis",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "S3Tests",
            dependencies: ["S3"],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "RedisTests",
            dependencies: ["Redis", "TestSupport"],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "FalTests",
            dependencies: [
                "Fal",
                "FalSim",
                "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["python"],
            swiftSettings: testSwiftSettings,
            linkerSettings: exportCurlURLFix
        ),
        .testTarget(
            name: "ClapperTests",
            dependencies: [
                "Clapper",
                "FalSim",
                "S3",
                "TestSupport",
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["python"],
            swiftSettings: testSwiftSettings,
            linkerSettings: exportCurlURLFix
        ),
    ]
)
