import Fal
import Logging
import Testing
import TestSupport

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
