@testable import Clapper
import Fal
import FalSim
import Foundation
import Synchronization
import Testing
import TestSupport

/// fal's address refuses connections for a while (an outage), then fal-sim comes up there.
@Suite("fal down, then back")
struct FalOutageTests {
    @Test(.timeLimit(.minutes(2)))
    func jobsMadeWhileFalRefusesConnectionsFinishWhenItIsBack() async throws {
        // Held (bound, not listening) while fal is "down", so no parallel test takes it.
        let refusing = Mutex<RefusingPort?>(try RefusingPort())
        let falPort = try #require(refusing.withLock { $0?.port })
        var sim = SimSetup().configuration
        sim.host = "127.0.0.1"
        sim.port = falPort
        let simConfiguration = sim
        let user = "outage-\(UUID().uuidString.prefix(8))"
        let token = TestUsers.token(user)
        try await withGateway(GatewayOptions(fal: .none, configure: {
            ReconcileSetup.on(&$0)
            $0.falQueueURL = "http://127.0.0.1:\(falPort)"
            $0.falKey = "sim-key:sim-secret"
            $0.falJWKSURL = "http://127.0.0.1:\(falPort)/.well-known/jwks.json"
            $0.falWebhookUserID = simConfiguration.userID
        })) { stack in
            // 60 jobs while nothing listens on fal's port, 8 at a time: each is accepted and stays
            // queued. (60 at once under the full suite's load once outlasted the test client's
            // deadline: each create waits for its submit's retries, about 0.9 s, before answering.)
            var ids: [String] = []
            try await withThrowingTaskGroup(of: String?.self) { group in
                for index in 0..<60 {
                    if index >= 8, let id = try await group.next() { if let id { ids.append(id) } }
                    group.addTask {
                        let reply = try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("outage \(index)"))
                        #expect(reply.status == 202, "\(reply.status) \(reply.text)")
                        return reply.json["jobId"] as? String
                    }
                }
                for try await id in group { if let id { ids.append(id) } }
            }
            #expect(ids.count == 60)
            for id in ids.prefix(5) {
                #expect(try await stack.gateway.job(id, token: token)["status"] as? String == "queued")
            }
            // fal comes back on its address: the reconciler sends every task (once) and all finish.
            refusing.withLock { $0 = nil }
            try await withFalSim(configuration: simConfiguration) { fal in
                for id in ids {
                    let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: token, until: isFinished)
                    #expect(done["status"] as? String == "completed", "\(id): \(done)")
                    #expect(done["audioStatus"] as? String == "completed", "\(id): \(done)")
                }
                let records = await fal.requests()
                // One video (prompt as given) and one audio (the prompt with the audio suffix) each.
                for index in 0..<60 {
                    #expect(records.filter { $0.input.contains("outage \(index)\"") }.count == 1)
                    #expect(records.filter { $0.input.contains("outage \(index) ambient sounds\"") }.count == 1)
                }
            }
        }
    }
}
