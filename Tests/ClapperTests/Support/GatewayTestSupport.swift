import Clapper
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Redis
import TestSupport

/// A configuration for one test gateway: free port, the test's Redis, short timeouts.
func testConfiguration(redis server: RedisServer, _ customize: (inout ClapperConfiguration) -> Void = { _ in }) -> ClapperConfiguration {
    var configuration = ClapperConfiguration(
        httpHost: "127.0.0.1",
        httpPort: 0,
        redis: RedisConfiguration(url: server.url, poolSize: 8, poolTimeout: .seconds(2), connectTimeout: .milliseconds(500), commandTimeout: .seconds(2)),
        webhookSecret: "test-webhook-secret-0123456789",
        jwtSecret: "test-jwt-secret-0123456789abcdef",
        adminToken: "test-admin-token",
        logLevel: .warning
    )
    customize(&configuration)
    return configuration
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
