@testable import Clapper
import Foundation
import Testing
import TestSupport

@Suite("Starting safely: dev mode stays local, a port in use is one line")
struct StartupSafetyTests {
    @Test(arguments: ["127.0.0.1", "127.3.2.1", "localhost", "LOCALHOST", "::1", "[::1]", "::ffff:127.0.0.1"])
    func loopbackHostsAreLoopback(host: String) {
        #expect(ClapperConfiguration.isLoopback(host))
    }

    @Test(arguments: ["0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "128.0.0.1", "example.com", "localhost.example.com", "::2", "::ffff:10.0.0.1", "", "1e300"])
    func otherHostsAreNot(host: String) {
        #expect(!ClapperConfiguration.isLoopback(host))
    }

    @Test(arguments: ["0.0.0.0", "::", "10.0.0.1", "gateway.internal"])
    func devModeRefusesANonLoopbackAddress(host: String) {
        let error = #expect(throws: ClapperConfiguration.Error.self) {
            try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1", "CLAPPER_HTTP_HOST": host])
        }
        #expect(error?.key == "CLAPPER_DEV_MODE")
        #expect(error?.message.contains("CLAPPER_HTTP_HOST") == true)
        #expect(error?.message.contains("CLAPPER_DEV_MODE_ALLOW_REMOTE") == true)
    }

    @Test func devModeOnAnotherAddressOnlyWhenExplicitlyAllowed() throws {
        let allowed = try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1", "CLAPPER_HTTP_HOST": "0.0.0.0", "CLAPPER_DEV_MODE_ALLOW_REMOTE": "1"])
        #expect(allowed.devMode)
        let error = #expect(throws: ClapperConfiguration.Error.self) {
            try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1", "CLAPPER_DEV_MODE_ALLOW_REMOTE": "perhaps"])
        }
        #expect(error?.key == "CLAPPER_DEV_MODE_ALLOW_REMOTE")
        // Outside dev mode the address is the operator's choice.
        let production = try ClapperConfiguration(environment: [
            "CLAPPER_HTTP_HOST": "0.0.0.0", "CLAPPER_WEBHOOK_SECRET": "0123456789abcdef0123", "CLAPPER_AUTH_JWT_SECRET": "jwt-secret-0123456789",
        ])
        #expect(production.httpHost == "0.0.0.0")
    }

    @Test func devModeDrawsAWebhookSecretPerProcessUnlessOneIsSet() throws {
        let first = try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1"])
        let second = try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1"])
        #expect(first.webhookSecret != second.webhookSecret)
        #expect(first.webhookSecret.utf8.count == 64)
        #expect(first.webhookSecret != "clapper-dev-mode-webhook-secret")
        let shared = try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1", "CLAPPER_WEBHOOK_SECRET": "shared-dev-secret-0123456789"])
        #expect(shared.webhookSecret == "shared-dev-secret-0123456789")
        // Dev mode has no built-in user-token key or admin token either.
        #expect(first.jwtSecret == nil)
        #expect(first.adminToken == nil)
    }

    /// The executable: exit 2 with the keys named, like every other configuration error.
    @Test(.timeLimit(.minutes(1)))
    func theExecutableRefusesDevModeOnAllInterfaces() async throws {
        let result = try await PackageExecutable.run("clapper", environment: ["CLAPPER_DEV_MODE": "1", "CLAPPER_HTTP_HOST": "0.0.0.0", "CLAPPER_HTTP_PORT": "\(try FreePort.find())"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("CLAPPER_DEV_MODE"))
        #expect(result.stderr.contains("CLAPPER_DEV_MODE_ALLOW_REMOTE"))
    }

    /// A port in use: one line naming the address, exit 1, no crash report.
    @Test(.timeLimit(.minutes(1)))
    func aPortInUseIsOneLineAndANonZeroExit() async throws {
        try await withRedisServer { server in
            let occupied = try OccupiedPort()
            let result = try await PackageExecutable.run("clapper", environment: [
                "CLAPPER_DEV_MODE": "1",
                "CLAPPER_HTTP_PORT": "\(occupied.port)",
                "CLAPPER_REDIS_URL": server.urlString,
                "CLAPPER_RECONCILE_INTERVAL_MS": "0",
                "CLAPPER_LOG_LEVEL": "error",  // no start-up warnings: only what the failure prints
            ])
            #expect(result.status == 1)
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "stderr: \(result.stderr)")
            #expect(lines.first?.contains("cannot listen on 127.0.0.1:\(occupied.port): address already in use") == true)
            #expect(!result.stderr.contains("Fatal error"))
            #expect(!result.stderr.lowercased().contains("backtrace"))
            withExtendedLifetime(occupied) {}
        }
    }
}
