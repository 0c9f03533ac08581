import FalSim
import Foundation
import Testing
import TestSupport

@testable import Clapper

/// One file to play (issue 15 item 5): the rules without I/O.
@Suite("Merge: a third task that follows video and audio (no I/O)")
struct MergeRuleTests {
    let t0 = JobFixture.t0
    var t1: Date { t0.addingTimeInterval(1) }
    var t2: Date { t0.addingTimeInterval(2) }

    static func parse(_ feature: String) throws -> CreateJobRequest {
        try CreateJobRequest.parse(Array(#"{"prompt":"p","durationSeconds":2,"feature":\#(feature)}"#.utf8), catalog: .default)
    }

    static func job(_ feature: String) throws -> Job {
        try parse(feature).makeJob(id: "j", userID: "u", catalog: .default, at: JobFixture.t0)
    }

    @Test func onByDefaultForASeparateAudioTrackOnly() throws {
        #expect(try Self.job(#"{"audio":true,"audioTier":"fast"}"#).merge?.model == "fal-ai/ffmpeg-api/merge-audio-video")
        #expect(try Self.job(#"{"audio":true,"audioTier":"synced"}"#).merge == nil, "mmaudio's output already has the sound")
        #expect(try Self.job(#"{"audio":true,"audioTier":"synced","merge":true}"#).merge != nil)
        #expect(try Self.job(#"{"audio":true,"merge":false}"#).merge == nil)
        #expect(try Self.job(#"{"audio":false}"#).merge == nil)
        #expect(throws: ClapperError.self) { try Self.parse(#"{"audio":false,"merge":true}"#) }
        #expect(throws: ClapperError.self) { try Self.parse(#"{"audio":true,"merge":"yes"}"#) }
        let job = try Self.job(#"{"audio":true,"audioTier":"fast"}"#)
        #expect(job.merge?.estimatedCost == MicroUSD(400), "2 s at $0.0002")
        #expect(job.submissionsDue == [.video, .audio], "the merge waits for both")
    }

    func both(_ job: inout Job) -> JobTransition {
        _ = job.apply(.video, JobFixture.accepted("v"), at: t1)
        _ = job.apply(.audio, JobFixture.accepted("a"), at: t1)
        _ = job.apply(.video, .completed(mediaURL: "https://m/v.mp4"), at: t1)
        return job.apply(.audio, .completed(mediaURL: "https://m/a.wav"), at: t2)
    }

    @Test func submittedOnceBothCompletedAndTheJobWaitsForIt() throws {
        var job = try Self.job(#"{"audio":true}"#)
        let transition = both(&job)
        #expect(transition.actions == [.submit(.merge)])
        #expect(job.status == .running, "not finished while the merge runs")
        #expect(job.submissionsDue == [.merge])
        #expect(job.dueSince(.merge) == t2)
        #expect(String(decoding: ModelCatalog.default.input(for: job, .merge), as: UTF8.self) == #"{"video_url":"https://m/v.mp4","audio_url":"https://m/a.wav"}"#)
        _ = job.apply(.merge, JobFixture.accepted("m"), at: t2)
        _ = job.apply(.merge, .completed(mediaURL: "https://m/merged.mp4"), at: t2)
        #expect(job.status == .completed)
    }

    @Test func aFailedMergeFailsNothingElse() throws {
        var job = try Self.job(#"{"audio":true}"#)
        _ = both(&job)
        _ = job.apply(.merge, JobFixture.accepted("m"), at: t2)
        _ = job.apply(.merge, .failed(TaskError(code: "fal_error", message: "Invalid status code: 422")), at: t2)
        #expect(job.status == .completed)
        #expect(job.video.mediaURL == "https://m/v.mp4" && job.audio?.mediaURL == "https://m/a.wav")
    }

    @Test func aFailedInputCancelsTheMergeAndARetryBringsItBack() throws {
        var job = try Self.job(#"{"audio":true}"#)
        _ = job.apply(.video, JobFixture.accepted("v"), at: t1)
        _ = job.apply(.video, .completed(mediaURL: "https://m/v.mp4"), at: t1)
        let failed = job.apply(.audio, .failed(TaskError(code: "fal_error", message: "boom")), at: t1)
        #expect(failed.actions.isEmpty)
        #expect(job.merge?.status == .canceled && job.merge?.error?.code == "merge_inputs_missing")
        #expect(job.status == .completed, "the video is delivered without a merged file")
        _ = job.apply(.audio, .retry, at: t2)
        #expect(job.merge?.status == .pending && job.merge?.error == nil, "the merge follows the retried audio")
        _ = job.apply(.audio, JobFixture.accepted("a2"), at: t2)
        #expect(job.apply(.audio, .completed(mediaURL: "https://m/a2.wav"), at: t2).actions == [.submit(.merge)])
    }

    @Test func aCanceledJobNeverMerges() throws {
        var job = try Self.job(#"{"audio":true}"#)
        _ = job.apply(.video, JobFixture.accepted("v"), at: t1)
        _ = job.apply(.video, .completed(mediaURL: "https://m/v.mp4"), at: t1)
        _ = job.cancel(at: t1)
        #expect(job.merge?.status == .canceled)
        #expect(job.submissionsDue.isEmpty)
        #expect(job.apply(.audio, .completed(mediaURL: "https://m/a.wav"), at: t2).actions.isEmpty)
    }
}

/// The merge end to end with fal-sim's `fal-ai/ffmpeg-api/merge-audio-video`.
@Suite("Merge: one file to play, end to end")
struct MergeEndToEndTests {
    let user = "merge-\(UUID().uuidString.prefix(6))"
    var token: String { TestUsers.token(user) }

    @Test(.timeLimit(.minutes(1)))
    func aJobWithAudioEndsWithOneMergedFile() async throws {
        try await withGateway { stack in
            let created = try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("merged \(UUID())"))
            #expect(created.status == 202, "\(created.text)")
            #expect((created.json["feature"] as? [String: Any])?["merge"] as? Bool == true)
            #expect(created.json["mergeStatus"] as? String == "pending")
            let id = try #require(created.json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: token, until: isFinished)
            #expect(done["status"] as? String == "completed")
            #expect(done["mergeStatus"] as? String == "completed", "\(done)")
            let merged = try #require(done["mergedUrl"] as? String)
            let requestID = try #require(done["mergeRequestId"] as? String)
            let record = try #require(await stack.sim.request(id: requestID))
            #expect(record.model == "fal-ai/ffmpeg-api/merge-audio-video")
            let input = try #require(try JSONSerialization.jsonObject(with: Data(record.input.utf8)) as? [String: String])
            #expect(input == ["video_url": done["videoUrl"] as? String, "audio_url": done["audioUrl"] as? String])
            #expect(merged != done["videoUrl"] as? String)
            #expect(await stack.sim.requests().filter { $0.model == "fal-ai/ffmpeg-api/merge-audio-video" }.count == 1)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aFailedMergeStillDeliversVideoAndAudio() async throws {
        try await withGateway { stack in
            try await stack.sim.addFaultRule(FalSimFaultRule(model: "fal-ai/ffmpeg-api/merge-audio-video", faults: ["fail"]))
            let id = try #require(try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("merge fails \(UUID())")).json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: token, until: isFinished)
            #expect(done["status"] as? String == "completed")
            #expect(done["videoUrl"] is String && done["audioUrl"] is String)
            #expect(done["mergeStatus"] as? String == "failed")
            #expect(done["mergeErrorCode"] as? String == "fal_error")
            #expect(done["mergedUrl"] is NSNull)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aFailedAudioMeansNoMergeRequestAtAll() async throws {
        try await withGateway { stack in
            try await stack.sim.addFaultRule(FalSimFaultRule(model: "cassetteai/sound-effects-generator", faults: ["fail"]))
            let id = try #require(try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("no audio \(UUID())")).json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: token, until: isFinished)
            #expect(done["status"] as? String == "completed")
            #expect(done["videoUrl"] is String)
            #expect(done["mergeStatus"] as? String == "canceled")
            #expect(done["mergeErrorCode"] as? String == "merge_inputs_missing")
            #expect(await stack.sim.requests().allSatisfy { $0.model != "fal-ai/ffmpeg-api/merge-audio-video" })
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aMergeWhoseWebhookIsLostIsFinishedByTheReconciler() async throws {
        try await withGateway(.sim(SimSetup(), { ReconcileSetup.on(&$0) })) { stack in
            try await stack.sim.addFaultRule(FalSimFaultRule(model: "fal-ai/ffmpeg-api/merge-audio-video", faults: ["drop-webhook"]))
            let id = try #require(try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("lost merge \(UUID())")).json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: token, until: isFinished)
            #expect(done["mergeStatus"] as? String == "completed", "\(done)")
            let requestID = try #require(done["mergeRequestId"] as? String)
            #expect(await stack.sim.request(id: requestID)?.deliveries.isEmpty == true, "no webhook: the reconciler fetched the result")
        }
    }
}
