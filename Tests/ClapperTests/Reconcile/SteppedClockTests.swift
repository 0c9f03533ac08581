@testable import Clapper
import FalSim
import Foundation
import Testing
import TestSupport

/// The reconciler waits on the injected clock, so its deadlines are tested by stepping time,
/// with the models' real timeouts (15 minutes for the video) instead of shortened ones.
@Suite("Reconciler on a stepped clock")
struct SteppedClockTests {
    @Test(.timeLimit(.minutes(1)))
    func anUnknownSubmitIsGivenUpAtTheModelsRealDeadline() async throws {
        let clock = ManualClock()
        let sim = ReconcileSetup.sim(faults: ["submit-stall", "drop-webhook"]) { $0.stallDuration = .seconds(30) }
        var options = GatewayOptions(fal: .sim(sim), configure: {
            $0.reconcileInterval = .seconds(1)
            $0.reconcilePolicy = ReconcileSetup.policy
            $0.falSubmitTimeout = .milliseconds(300)
        })
        options.clock = clock
        try await withGateway(options) { stack in
            let user = TestUsers.token("stepped-\(UUID())")
            let start = clock.now
            let created = try await stack.gateway.send(.POST, "/v1/jobs", token: user, body: jobBody("stepped-\(UUID())", audio: false))
            let id = try #require(created.json["jobId"] as? String)
            #expect(created.json["videoStatus"] as? String == "pending")
            let timeout = Double(ModelCatalog.default.video.timeoutSeconds)
            #expect(timeout >= 600)

            // Time moves only when the test moves it: 10 s of clock time per 10 ms, from just
            // before the deadline. No round can fail the task before the deadline's clock time.
            clock.advance(by: .seconds(Int64(timeout) - 30))
            let ticker = Task {
                while !Task.isCancelled {
                    clock.advance(by: .seconds(10))
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            defer { ticker.cancel() }
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: user, until: isFinished)
            ticker.cancel()
            #expect(done["status"] as? String == "failed")
            #expect(done["videoErrorCode"] as? String == TaskError.submitOutcomeUnknownCode)
            // Stamped with the clock's time, at or after the model's deadline.
            let createdAt = try #require((done["createdAt"] as? String).flatMap(Self.date))
            let updatedAt = try #require((done["updatedAt"] as? String).flatMap(Self.date))
            #expect(abs(createdAt.timeIntervalSince(start)) < 1)
            #expect(updatedAt.timeIntervalSince(createdAt) >= timeout)
        }
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}
