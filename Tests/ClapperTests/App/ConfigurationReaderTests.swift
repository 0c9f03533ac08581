import Clapper
import Configuration
import Foundation
import TestSupport
import Synchronization
import Testing

/// ClapperConfiguration reads through swift-configuration: keys by their environment names,
/// command-line overrides first, secrets marked and redacted wherever a read is reported.
@Suite("Configuration through ConfigReader")
struct ConfigurationReaderTests {
    final class Reads: AccessReporter {
        let events = Mutex<[AccessEvent]>([])
        func report(_ event: AccessEvent) { events.withLock { $0.append(event) } }
    }

    @Test func secretsAreMarkedAndNeverReported() throws {
        let secrets = ["FAL_KEY": "id:fal-secret-value", "CLAPPER_WEBHOOK_SECRET": "webhook-secret-0123456789", "CLAPPER_AUTH_JWT_SECRET": "jwt-secret-0123456789", "CLAPPER_ADMIN_TOKEN": "admin-token-0123456789"]
        let reads = Reads()
        let configuration = try ClapperConfiguration(reader: ClapperConfiguration.reader(environment: secrets.merging(["CLAPPER_HTTP_PORT": "9000"]) { $1 }, overrides: ["CLAPPER_ADMIN_TOKEN": "admin-token-from-flag-0123"], accessReporter: reads))
        #expect(configuration.falKey == "id:fal-secret-value")
        #expect(configuration.adminToken == "admin-token-from-flag-0123", "an override comes before the environment")
        #expect(configuration.httpPort == 9000)
        let events = reads.events.withLock { $0 }
        let reported = events.map { "\($0.result) \($0.providerResults.map { "\($0.result)" })" }.joined(separator: "\n")
        for secret in Array(secrets.values) + ["admin-token-from-flag-0123"] {
            #expect(!reported.contains(secret))
        }
        let falKey = try #require(events.first { $0.metadata.key == ["fal", "key"] })
        #expect((try? falKey.result.get())??.isSecret == true)
        #expect(reported.contains("9000"), "other values are reported as they are")
    }

    /// The job cache's size: the default, a value, and one out of range refused with its key named.
    @Test func theJobCacheSizeIsReadAndBounded() throws {
        let required = ["CLAPPER_WEBHOOK_SECRET": "0123456789abcdef0123", "CLAPPER_AUTH_JWT_SECRET": "jwt-secret-0123456789"]
        #expect(try ClapperConfiguration(environment: required).jobCacheSize == 8192)
        #expect(try ClapperConfiguration(environment: required.merging(["CLAPPER_JOB_CACHE_SIZE": "50000"]) { $1 }).jobCacheSize == 50000)
        for bad in ["0", "-1", "100001", "lots"] {
            let error = #expect(throws: ClapperConfiguration.Error.self) {
                try ClapperConfiguration(environment: required.merging(["CLAPPER_JOB_CACHE_SIZE": bad]) { $1 })
            }
            #expect(error?.key == "CLAPPER_JOB_CACHE_SIZE")
        }
    }

    @Test func flagsSetTheirKeysAndUnknownFlagsAreRefused() throws {
        let required = ["CLAPPER_WEBHOOK_SECRET": "0123456789abcdef0123", "CLAPPER_AUTH_JWT_SECRET": "jwt-secret-0123456789"]
        let configuration = try ClapperConfiguration(environment: required, arguments: ["--http-port=9200", "--fal-key", "id:flag", "--sse-max-streams-per-user", "3"])
        #expect(configuration.httpPort == 9200 && configuration.falKey == "id:flag" && configuration.sseMaxStreamsPerUser == 3)
        for arguments in [["--htp-port", "1"], ["stray"], ["--http-port"]] {
            let error = #expect(throws: ClapperConfiguration.Error.self) { try ClapperConfiguration(environment: required, arguments: arguments) }
            #expect(error?.key == "arguments", "\(arguments)")
        }
        // A bad value from a flag names its key, as from the environment.
        let bad = #expect(throws: ClapperConfiguration.Error.self) { try ClapperConfiguration(environment: required, arguments: ["--http-port", "eighty"]) }
        #expect(bad?.key == "CLAPPER_HTTP_PORT")
    }

    @Test func helpListsEveryFlagWithItsKey() async throws {
        let (status, help, _) = try await PackageExecutable.runToEnd(ExecutableTests.binary, arguments: ["--help"])
        #expect(status == 0)
        for key in ClapperOptions.keys {
            let flag = "--" + (key.hasPrefix("CLAPPER_") ? String(key.dropFirst(8)) : key).lowercased().replacingOccurrences(of: "_", with: "-")
            #expect(help.contains(flag) && help.contains(key), "\(key)")
        }
    }
}
