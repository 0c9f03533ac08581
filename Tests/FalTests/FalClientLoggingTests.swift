import Fal
import Logging
import Synchronization
import Testing

/// Collects log lines in memory.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    var logger: Logger {
        var logger = Logger(label: "fal-test") { _ in Handler(sink: self) }
        logger.logLevel = .trace
        return logger
    }

    struct Handler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            sink.append("\(event.level) \(event.message) \(merged)")
        }
    }
}

@Suite struct FalClientLoggingTests {
    @Test func theKeyNeverReachesLogsOrErrors() async {
        let logs = CapturedLogs()
        let transport = ScriptedTransport([
            .failure(.cannotConnect("refused")), response(429, "{}"), response(401, #"{"detail": "Invalid authentication credentials"}"#),
        ])
        let client = FalClient(
            configuration: FalClientConfiguration(queueURL: "http://fal.test", key: "kid:TOPSECRET"),
            transport: transport,
            logger: logs.logger,
            sleep: { _ in }
        )
        do {
            _ = try await client.submit(model: "fal-ai/flux/dev", input: json("{}"), webhookURL: "https://hook.example/?token=HOOKTOKEN")
            Issue.record("expected unauthorized")
        } catch {
            #expect(error.code == .unauthorized)
            #expect(!"\(error)".contains("TOPSECRET"))
        }
        #expect(transport.requests.count == 3)
        #expect(!logs.all.isEmpty)
        #expect(logs.all.allSatisfy { !$0.contains("TOPSECRET") && !$0.contains("HOOKTOKEN") })
    }
}
