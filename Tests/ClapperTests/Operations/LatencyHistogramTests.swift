import Foundation
import Testing
import TestSupport

@testable import Clapper

/// Latency histograms (issue 19): one job's path through a gateway fills every one of them, with
/// the documented bucket bounds.
@Suite("Metrics: latency histograms")
struct LatencyHistogramTests {
    /// The value of the first sample line starting with `prefix` (labels included as written).
    static func sample(_ text: String, _ prefix: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
    }

    @Test(.timeLimit(.minutes(1)))
    func oneJobFillsEveryHistogram() async throws {
        let user = "histograms-\(UUID().uuidString.prefix(6))"
        try await withGateway(.sim(SimSetup()) { ReconcileSetup.on(&$0) }) { stack in
            let created = try await stack.gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user), body: jobBody("histograms \(UUID())", audio: false))
            let id = try #require(created.json["jobId"] as? String)
            let stream = try await stack.open(stack.jobs.jobPath(id, user: user))
            while let frame = try await stream.nextEvent(), frame.event != "done" {}
            _ = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: TestUsers.token(user), until: isFinished)
            let text = try await stack.gateway.send(.GET, "/metrics").text

            // The bucket bounds as documented, and at least one observation in each histogram.
            let expectations: [(String, String)] = [
                ("http_server_request_duration_bucket{", #"le="0.0005""#),
                ("clapper_redis_duration_seconds_bucket{command=\"EVALSHA\"", #"le="0.0001""#),
                ("clapper_fal_request_duration_seconds_bucket{", #"le="60.0""#),
                ("clapper_webhook_duration_seconds_bucket{", #"le="5.0""#),
                ("clapper_event_delivery_lag_seconds_bucket{", #"le="0.002""#),
                ("clapper_reconcile_check_duration_seconds_bucket{", #"le="30.0""#),
            ]
            for (prefix, bound) in expectations {
                let lines = text.split(separator: "\n").filter { $0.hasPrefix(prefix) }
                #expect(lines.contains { $0.contains(bound) }, "\(prefix) with \(bound): \(lines.prefix(3))")
            }
            for name in ["clapper_redis_duration_seconds_count{command=\"EVALSHA\"}", "clapper_fal_request_duration_seconds_count{",
                         "clapper_webhook_duration_seconds_count{", "clapper_event_delivery_lag_seconds_count",
                         "clapper_reconcile_check_duration_seconds_count{",
                         // The job's submit and webhook found it cached (this gateway wrote it).
                         "clapper_job_cache_total{result=\"hit\"}"] {
                #expect((Self.sample(text, name) ?? 0) >= 1, "\(name) observed")
            }
            #expect(text.contains(#"operation="submit""#) && text.contains(#"model="fal-ai/ltx-video-13b-distilled""#))
            #expect(text.contains(#"http_route="/v1/jobs""#))
        }
    }
}
