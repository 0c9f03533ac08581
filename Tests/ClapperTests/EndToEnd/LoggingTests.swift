import Clapper
import FalSim
import Foundation
import Logging
import Testing
import TestSupport

@Suite("Secrets stay out of logs")
struct LoggingTests {
    @Test(.timeLimit(.minutes(1)))
    func tokensKeysAndSignaturesNeverReachTheLogsEvenAtTrace() async throws {
        let logs = CapturedLogs()
        let setup = SimSetup()
        try await withGateway(GatewayOptions(fal: .sim(setup.configuration), logger: logs.logger, configure: { $0.logLevel = .trace })) { stack in
            let gateway = stack.gateway, sim = stack.sim
            let alice = TestUsers.token("alice")
            let created = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("log \(UUID())", audio: false))
            let eventsURL = try #require(created.json["eventsUrl"] as? String)
            let eventsToken = try #require(URLComponents(string: eventsURL)?.queryItems?.first { $0.name == "token" }?.value)
            let jobID = try #require(created.json["jobId"] as? String)
            let requestID = try #require(try await gateway.job(jobID, token: alice)["videoRequestId"] as? String)
            let record = try #require(await sim.wait(requestID: requestID) { !$0.deliveries.isEmpty })
            let webhookToken = try #require(record.webhookURL.flatMap { URLComponents(string: $0)?.queryItems?.first { $0.name == "token" }?.value })
            // A rejected webhook (bad signature) and a bad bearer token are logged too.
            let forged = try await WebhookSender(key: .init()).send(Array(#"{"request_id":"x","status":"OK","payload":{}}"#.utf8), requestID: "x", to: try #require(record.webhookURL))
            #expect(forged.status == 401)
            #expect(try await gateway.send(.GET, "/v1/jobs", token: "not-a-real-token-abcdef").status == 401)
            _ = try await gateway.send(.GET, "/v1/jobs/\(jobID)", token: alice)

            let text = logs.all.joined(separator: "\n")
            #expect(!logs.all.isEmpty)
            #expect(text.contains("/v1/jobs"), "requests are logged at trace")
            for secret in [eventsToken, webhookToken, alice, "not-a-real-token-abcdef", "sim-key:sim-secret", gateway.configuration.webhookSecret, gateway.configuration.jwtSecret ?? "-"] {
                #expect(!text.contains(secret), "a secret reached the logs")
            }
        }
    }
}
