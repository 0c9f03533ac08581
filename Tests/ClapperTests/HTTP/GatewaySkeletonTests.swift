import Clapper
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Redis
import Testing
import TestSupport

@Suite("Gateway skeleton: health, errors, request ids, metrics")
struct GatewaySkeletonTests {
    @Test func healthzAnswersAndRequestIDsRoundTrip() async throws {
        try await withRouterClient { client, _ in
            try await client.execute(uri: "/healthz", method: .get, headers: [HTTPField.Name("X-Request-Id")!: "abc-123"]) { response in
                #expect(response.status == .ok)
                #expect(response.headers[HTTPField.Name("X-Request-Id")!] == "abc-123")
            }
            try await client.execute(uri: "/healthz", method: .get) { response in
                let id = response.headers[HTTPField.Name("X-Request-Id")!]
                #expect(id?.count == 32)
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func readyzFollowsRedisInTheSameProcess() async throws {
        // A long command timeout: only the ready deadline can make /readyz answer in time.
        try await withRouterClient({
            $0.redis.commandTimeout = .seconds(10)
            $0.readyTimeout = .milliseconds(500)
        }) { client, server in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
            }
            server.stop()
            let start = ContinuousClock.now
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(client.errorCode(response) == "not_ready")
            }
            // Bounds far above the deadline (these machines are noisy: 5.1 s once under the full
            // suite) and below the 10 s command timeout a hang would wait for.
            #expect(ContinuousClock.now - start < .seconds(8))
            try await server.restart()
            // Healed with at most one failed caller (the one whose PING meets the broken
            // connection); under load the fresh connection may need one more ready deadline.
            var failures = 0
            var restarted: HTTPResponse.Status = .serviceUnavailable
            while restarted != .ok, failures < 3 {
                restarted = try await client.execute(uri: "/readyz", method: .get) { $0.status }
                if restarted != .ok { failures += 1 }
            }
            #expect(restarted == .ok)
            #expect(failures <= 1, "\(failures) callers saw 503 after the restart")
            // A Redis that hangs (SIGSTOP) still gets an answer at the ready deadline.
            kill(server.pid, SIGSTOP)
            let hung = ContinuousClock.now
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
            }
            #expect(ContinuousClock.now - hung < .seconds(5))
            kill(server.pid, SIGCONT)
            // Ready again once Redis answers the PING that waited through the pause: on a loaded
            // machine that can take longer than one ready deadline, so a few tries within 10 s.
            var status: HTTPResponse.Status = .serviceUnavailable
            let resumed = ContinuousClock.now
            while status != .ok, ContinuousClock.now - resumed < .seconds(10) {
                status = try await client.execute(uri: "/readyz", method: .get) { $0.status }
            }
            #expect(status == .ok)
        }
    }

    @Test func unknownRoutesWrongMethodsAndBigBodiesGetJSONErrors() async throws {
        try await withRouterClient({ $0.maxBodyBytes = 2048 }) { client, _ in
            try await client.execute(uri: "/nope", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(client.errorCode(response) == "not_found")
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
            }
            try await client.execute(uri: "/healthz", method: .delete) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(client.errorCode(response) == "method_not_allowed")
                #expect(response.headers[.allow] == "GET")
            }
            try await client.execute(uri: "/healthz", method: .post, body: ByteBuffer(repeating: 0x41, count: 4096)) { response in
                #expect(response.status == .contentTooLarge)
                #expect(client.errorCode(response) == "payload_too_large")
            }
        }
    }

    @Test func metricsExposeRequestsAndThePool() async throws {
        try await withRouterClient { client, _ in
            try await client.execute(uri: "/readyz", method: .get) { _ in }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                #expect(text.contains("hb_requests"))
                #expect(text.contains("http_route=\"/readyz\""))
                #expect(text.contains("http_server_request_duration"))
                #expect(text.contains("clapper_redis_pool_in_use"))
                #expect(text.contains("clapper_redis_pool_waiters"))
            }
        }
    }
}

@Suite("Configuration")
struct ClapperConfigurationTests {
    let required = ["CLAPPER_WEBHOOK_SECRET": "0123456789abcdef0123", "CLAPPER_AUTH_JWT_SECRET": "jwt-secret-0123456789"]

    @Test func defaultsAndOverrides() throws {
        let configuration = try ClapperConfiguration(
            environment: required.merging(["CLAPPER_HTTP_PORT": "9000", "FAL_KEY": "id:secret"]) { $1 },
            arguments: ["--http-port", "9100", "--redis-url=redis://10.0.0.1:6380/2", "--fal-queue-url", "http://127.0.0.1:1"]
        )
        #expect(configuration.httpHost == "127.0.0.1")
        #expect(configuration.httpPort == 9100)
        #expect(configuration.redis.url.port == 6380)
        #expect(configuration.redis.url.database == 2)
        #expect(configuration.falQueueURL == "http://127.0.0.1:1")
        #expect(configuration.falKey == "id:secret")
        #expect(configuration.publicURL == "http://127.0.0.1:9100")
    }

    @Test(arguments: [
        ("CLAPPER_HTTP_PORT", "eighty"),
        ("CLAPPER_HTTP_PORT", "70000"),
        ("CLAPPER_REDIS_URL", "http://localhost"),
        ("CLAPPER_LOG_LEVEL", "loud"),
        ("CLAPPER_PUBLIC_URL", "ftp://x"),
        ("CLAPPER_DEV_MODE", "maybe"),
        ("CLAPPER_AUTH_JWT_SECRET", "short"),
        ("CLAPPER_ADMIN_TOKEN", "short"),
    ])
    func malformedValuesNameTheirKey(key: String, value: String) {
        let error = #expect(throws: ClapperConfiguration.Error.self) {
            try ClapperConfiguration(environment: required.merging([key: value]) { $1 })
        }
        #expect(error?.key == key)
    }

    @Test func secretsAreRequiredOutsideDevMode() {
        let error = #expect(throws: ClapperConfiguration.Error.self) { try ClapperConfiguration(environment: [:]) }
        #expect(error?.key == "CLAPPER_WEBHOOK_SECRET")
        #expect(throws: Never.self) { try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1"]) }
    }
}

@Suite("The clapper executable")
struct ExecutableTests {
    /// `.build/<config>/clapper`, next to the test bundle (ops/test builds it with the tests).
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("clapper")
    }

    @Test(.timeLimit(.minutes(1)))
    func sigtermExitsZeroWithinFiveSeconds() async throws {
        try await withRedisServer { server in
            let port = try FreePort.find()
            let process = SpawnedProcess()
            process.executableURL = Self.binary
            process.environment = [
                "CLAPPER_DEV_MODE": "1",
                "CLAPPER_HTTP_PORT": "\(port)",
                "CLAPPER_REDIS_URL": server.urlString,
                "CLAPPER_LOG_LEVEL": "error",
            ]
            process.standardError = FileHandle.nullDevice
            let exited = AsyncStream.makeStream(of: Int32.self)
            process.terminationHandler = { exited.continuation.yield($0.terminationStatus) }
            try process.run()
            while !FreePort.canConnect(port: port) {
                #expect(process.isRunning, "clapper exited before listening")
                try await Task.sleep(for: .milliseconds(20))
            }
            let start = ContinuousClock.now
            process.terminate()
            var statuses = exited.stream.makeAsyncIterator()
            let status = await statuses.next()
            #expect(status == 0)
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func aMalformedSettingStopsItWithTheKeyNamed() async throws {
        let (status, _, output) = try await PackageExecutable.runToEnd(
            Self.binary, arguments: [], environment: ["CLAPPER_DEV_MODE": "1", "CLAPPER_HTTP_PORT": "eighty"]
        )
        #expect(status == 2)
        #expect(output.contains("CLAPPER_HTTP_PORT"))
    }
}
