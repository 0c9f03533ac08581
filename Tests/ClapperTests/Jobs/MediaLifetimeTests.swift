import Clapper
import FalSim
import Foundation
import Testing
import TestSupport

/// fal keeps output media about a week by default while jobs live 30 days: every submit asks fal
/// to keep them as long as the job, and the view says until when.
@Suite("Media lifetime: asked of fal, shown in the view")
struct MediaLifetimeTests {
    let alice = TestUsers.token("media-\(UUID().uuidString.prefix(6))")

    @Test(.timeLimit(.minutes(1)))
    func everySubmitAsksForTheLifetimeAndTheViewSaysUntilWhen() async throws {
        try await withGateway(GatewayOptions { $0.mediaLifetime = .seconds(9 * 24 * 3600) }) { stack in
            let created = try await stack.gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("lifetime \(UUID())"))
            let id = try #require(created.json["jobId"] as? String)
            #expect(created.json["mediaExpiresAt"] is NSNull, "no media yet: \(created.text)")
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice, until: isFinished)
            #expect(done["status"] as? String == "completed")
            for key in ["videoRequestId", "audioRequestId"] {
                let requestID = try #require(done[key] as? String)
                let record = try #require(await stack.sim.request(id: requestID))
                #expect(record.options["x-fal-object-lifecycle-preference"] == #"{"expiration_duration_seconds":777600}"#)
            }
            // The video finished first: its completion plus nine days (within the job's life).
            let expires = try #require((done["mediaExpiresAt"] as? String).flatMap(Self.date))
            let created_ = try #require((done["createdAt"] as? String).flatMap(Self.date))
            let updated = try #require((done["updatedAt"] as? String).flatMap(Self.date))
            #expect(expires >= created_.addingTimeInterval(9 * 24 * 3600))
            #expect(expires <= updated.addingTimeInterval(9 * 24 * 3600))
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func zeroLeavesFalsDefault() async throws {
        try await withGateway(GatewayOptions { $0.mediaLifetime = nil }) { stack in
            let created = try await stack.gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("default \(UUID())", audio: false))
            let id = try #require(created.json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice, until: isFinished)
            let requestID = try #require(done["videoRequestId"] as? String)
            let record = try #require(await stack.sim.request(id: requestID))
            #expect(record.options["x-fal-object-lifecycle-preference"] == nil)
            #expect(done["mediaExpiresAt"] is NSNull)
        }
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}
