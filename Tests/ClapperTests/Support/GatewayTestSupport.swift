import Clapper
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOHTTP1
import Redis
import TestSupport

/// A configuration for one test gateway: free port, the test's Redis, short timeouts.
func testConfiguration(redis server: RedisServer, _ customize: (inout ClapperConfiguration) -> Void = { _ in }) -> ClapperConfiguration {
    var configuration = ClapperConfiguration(
        httpHost: "127.0.0.1",
        httpPort: 0,
        redis: RedisConfiguration(url: server.url, poolSize: 2, poolTimeout: .seconds(2), connectTimeout: .seconds(2), commandTimeout: .seconds(2)),
        webhookSecret: "test-webhook-secret-0123456789",
        jwtSecret: "test-jwt-secret-0123456789abcdef",
        adminToken: "test-admin-token",
        logLevel: .warning
    )
    customize(&configuration)
    return configuration
}

/// A logger at warning level: for gateways and services whose info lines would only be noise.
func quiet(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}

struct ErrorBody: Decodable {
    struct Inner: Decodable { let code: String; let message: String }
    let error: Inner
}

extension TestClientProtocol {
    /// Decodes a JSON error body `{"error":{"code","message"}}` and returns its code.
    func errorCode(_ response: TestResponse) -> String? {
        try? JSONDecoder().decode(ErrorBody.self, from: Data(response.body.readableBytesView)).error.code
    }
}

/// The gateway without a socket: Hummingbird's `.router` test client sends each request straight
/// to the router (the application's services still run: Redis pool, event hub). For handler-level
/// tests of answers (status, JSON error, headers) on a fresh Redis, no fal; streams, timeouts,
/// fal-sim callbacks and several instances need `withGateway`.
func withRouterClient<T: Sendable>(
    _ configure: (inout ClapperConfiguration) -> Void = { _ in },
    _ body: @Sendable (any TestClientProtocol, RedisServer) async throws -> T
) async throws -> T {
    try await withRedisServer { server in
        let app = try await buildApplication(testConfiguration(redis: server, configure))
        return try await app.test(.router) { client in try await body(client, server) }
    }
}

extension TestClientProtocol {
    /// `Gateway.send` through the test client: the same request and the same `Reply`.
    func send(_ method: HTTPMethod, _ path: String, token: String? = nil, headers: [String: String] = [:], body: [UInt8]? = nil) async throws -> Gateway.Reply {
        var fields = HTTPFields()
        if let token { fields[.authorization] = "Bearer \(token)" }
        for (name, value) in headers {
            guard let name = HTTPField.Name(name) else { throw TestFailure("bad header name \(name)") }
            fields[name] = value
        }
        if body != nil { fields[.contentType] = "application/json" }
        let response = try await executeRequest(
            uri: path, method: HTTPRequest.Method(rawValue: method.rawValue) ?? .get, headers: fields, body: body.map { ByteBuffer(bytes: $0) }
        )
        return Gateway.Reply(
            status: response.status.code,
            headers: HTTPHeaders(response.headers.map { ($0.name.rawName, $0.value) }),
            body: Array(response.body.readableBytesView)
        )
    }
}
