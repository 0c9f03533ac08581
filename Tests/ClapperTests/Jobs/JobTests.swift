import Foundation
import Testing

@testable import Clapper

/// Builds jobs for the tests in this target.
enum JobFixture {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func job(audio: Bool = true, mode: AudioMode = .parallel, tier: String = "fast", prompt: String = "a cat on a boat") -> Job {
        Job(
            id: "job1",
            userID: "u1",
            createdAt: t0,
            prompt: prompt,
            durationSeconds: 5,
            feature: JobFeature(audio: audio, audioTier: audio ? tier : nil),
            audioMode: mode,
            video: JobTask(kind: .video, model: "fal-ai/ltx-video-13b-distilled"),
            audio: audio ? JobTask(kind: .audio, model: tier == "synced" ? "fal-ai/mmaudio-v2" : "cassetteai/sound-effects-generator") : nil
        )
    }

    static func accepted(_ id: String) -> TaskEvent {
        .accepted(requestID: id, statusURL: "https://q/\(id)/status", responseURL: "https://q/\(id)", cancelURL: "https://q/\(id)/cancel")
    }
}

@Suite struct JobTests {
    let t0 = JobFixture.t0
    var t1: Date { t0.addingTimeInterval(1) }
    var t2: Date { t0.addingTimeInterval(2) }
    let falError = TaskError(code: "fal_error", message: "Invalid status code: 422")

    @Test func newJobIsQueuedAndDueForSubmission() {
        let parallel = JobFixture.job()
        #expect(parallel.status == .queued && !parallel.isFinished)
        #expect(parallel.submissionsDue == [.video, .audio])
        #expect(JobFixture.job(mode: .afterVideo).submissionsDue == [.video])
        #expect(JobFixture.job(audio: false).submissionsDue == [.video])
        #expect(JobFixture.job(audio: false).tasks.map(\.kind) == [.video])
    }

    @Test func statusDerivation() {
        var job = JobFixture.job()
        _ = job.apply(.video, JobFixture.accepted("v"), at: t1)
        _ = job.apply(.audio, JobFixture.accepted("a"), at: t1)
        #expect(job.status == .queued)
        _ = job.apply(.audio, .running, at: t1)
        #expect(job.status == .running)
        _ = job.apply(.audio, .completed(mediaURL: "a.wav"), at: t1)
        #expect(job.status == .running)  // video still queued, audio finished
        _ = job.apply(.video, .completed(mediaURL: "v.mp4"), at: t2)
        #expect(job.status == .completed && job.isFinished)
    }

    @Test func audioFailsVideoCompletesIsCompleted() {
        var job = JobFixture.job()
        #expect(job.apply(.audio, .failed(falError), at: t1).outcome == .changed)
        #expect(job.status == .running)  // a finished task counts as progress
        #expect(job.apply(.video, .completed(mediaURL: "v.mp4"), at: t2).outcome == .changed)
        #expect(job.status == .completed)
        #expect(job.audio?.status == .failed && job.audio?.error == falError)
    }

    @Test func videoCompletedWhileAudioUnfinishedIsRunning() {
        var job = JobFixture.job()
        _ = job.apply(.video, .completed(mediaURL: "v.mp4"), at: t1)
        #expect(job.status == .running)
        _ = job.apply(.audio, .timedOut, at: t2)
        #expect(job.status == .completed)
    }

    @Test(arguments: [TaskEvent.failed(TaskError(code: "fal_error", message: "m")), .timedOut])
    func videoFailureFailsTheJob(event: TaskEvent) {
        var job = JobFixture.job()
        _ = job.apply(.audio, .completed(mediaURL: "a.wav"), at: t1)
        _ = job.apply(.video, event, at: t2)
        #expect(job.status == .failed && job.isFinished)
        // Parallel mode: an audio that already ran is kept as it is.
        #expect(job.audio?.status == .completed)
    }

    @Test func videoOnlyJob() {
        var job = JobFixture.job(audio: false)
        #expect(job.apply(.audio, .running, at: t1).outcome != .changed)
        _ = job.apply(.video, .running, at: t1)
        #expect(job.status == .running)
        _ = job.apply(.video, .completed(mediaURL: "v"), at: t1)
        #expect(job.status == .completed)
    }

    @Test func videoCanceledByFalIsCanceled() {
        var job = JobFixture.job(audio: false)
        _ = job.apply(.video, .canceled, at: t1)
        #expect(job.status == .canceled)
    }

    @Test func changesMoveUpdatedAtAndIgnoredOnesDoNot() {
        var job = JobFixture.job()
        _ = job.apply(.video, .running, at: t1)
        #expect(job.updatedAt == t1)
        let transition = job.apply(.video, .queued, at: t2)
        #expect(!transition.outcome.isChanged && transition.actions.isEmpty)
        #expect(job.updatedAt == t1)
        #expect(job.version == 1)  // the store's business
    }

    @Test func afterVideoSubmitsAudioExactlyOnce() {
        var job = JobFixture.job(tier: "synced")
        job.audioMode = .afterVideo
        _ = job.apply(.video, .submitStarted(attempt: "a1"), at: t0)
        _ = job.apply(.video, JobFixture.accepted("v"), at: t0)
        #expect(job.apply(.video, .running, at: t1).actions.isEmpty)
        let first = job.apply(.video, .completed(mediaURL: "v.mp4"), at: t1)
        #expect(first.outcome == .changed && first.actions == [.submit(.audio)])
        #expect(job.status == .running)
        #expect(job.submissionsDue == [.audio])
        // The same webhook again: ignored, no second submit.
        let second = job.apply(.video, .completed(mediaURL: "v.mp4"), at: t2)
        #expect(!second.outcome.isChanged && second.actions.isEmpty)
        // The late submit response for the video: ids known, ignored, no submit.
        #expect(job.apply(.video, JobFixture.accepted("v"), at: t2).actions.isEmpty)
        // The I/O layer marks the submit; a second instance trying the same is ignored.
        #expect(job.apply(.audio, .submitStarted(attempt: "a1"), at: t2).outcome == .changed)
        #expect(job.apply(.audio, .submitStarted(attempt: "a1"), at: t2).outcome != .changed)
        #expect(job.submissionsDue.isEmpty)
    }

    @Test func afterVideoCompletionBeforeTheVideoSubmitResponseStillSubmitsOnceOnly() {
        var job = JobFixture.job(mode: .afterVideo)
        _ = job.apply(.video, .submitStarted(attempt: "a1"), at: t0)
        #expect(job.apply(.video, .completed(mediaURL: "v"), at: t1).actions == [.submit(.audio)])
        // The submit response arrives after: records ids, no second submit.
        let late = job.apply(.video, JobFixture.accepted("v"), at: t2)
        #expect(late.outcome == .changed && late.actions.isEmpty)
    }

    @Test func afterVideoNoSubmitWhenAudioAlreadyStarted() {
        var job = JobFixture.job(mode: .afterVideo)
        _ = job.apply(.audio, .submitStarted(attempt: "a1"), at: t0)
        #expect(job.apply(.video, .completed(mediaURL: "v"), at: t1).actions.isEmpty)
    }

    @Test func parallelModeNeverEmitsSubmit() {
        var job = JobFixture.job(mode: .parallel)
        #expect(job.apply(.video, .completed(mediaURL: "v"), at: t1).actions.isEmpty)
    }

    @Test(arguments: [TaskEvent.failed(TaskError(code: "fal_error", message: "m")), .canceled, .timedOut])
    func afterVideoVideoFailureCancelsTheAudio(event: TaskEvent) {
        var job = JobFixture.job(mode: .afterVideo)
        _ = job.apply(.video, JobFixture.accepted("v"), at: t0)
        let transition = job.apply(.video, event, at: t1)
        #expect(transition.outcome == .changed && transition.actions.isEmpty)
        #expect(job.audio?.status == .canceled)
        #expect(job.audio?.error?.code == "video_failed")
        #expect(job.audio?.completedAt == t1)
        #expect(job.isFinished)
        #expect(job.submissionsDue.isEmpty)
        // A late audio event changes nothing.
        #expect(job.apply(.audio, .completed(mediaURL: "a"), at: t2).outcome != .changed)
    }

    @Test func retriedVideoBringsBackTheAudioItDropped() {
        var job = JobFixture.job(mode: .afterVideo)
        _ = job.apply(.video, .submitStarted(attempt: "a1"), at: t0)
        _ = job.apply(.video, JobFixture.accepted("v1"), at: t0)
        _ = job.apply(.video, .failed(falError), at: t1)
        #expect(job.audio?.error?.code == "video_failed" && job.status == .failed)
        #expect(job.apply(.video, .retry, at: t2).outcome == .changed)
        #expect(job.video.status == .pending && job.video.previousRequestIDs == ["v1"])
        #expect(job.audio?.status == .pending && job.audio?.error == nil && job.audio?.completedAt == nil)
        #expect(job.status == .queued && job.submissionsDue == [.video])
        _ = job.apply(.video, .submitStarted(attempt: "a1"), at: t2)
        _ = job.apply(.video, JobFixture.accepted("v2"), at: t2)
        // A late webhook of the first attempt is recognisable.
        #expect(job.video.isFromPreviousAttempt(requestID: "v1"))
        #expect(job.apply(.video, .completed(mediaURL: "v"), at: t2).actions == [.submit(.audio)])
    }

    @Test func retryOnACanceledJobIsIgnored() {
        var job = JobFixture.job()
        _ = job.apply(.audio, .failed(falError), at: t0)
        _ = job.cancel(at: t1)
        #expect(job.audio?.status == .failed)
        #expect(!job.apply(.audio, .retry, at: t2).outcome.isChanged)
        #expect(job.audio?.status == .failed)
    }

    @Test func retryOfAFailedAudioInParallelMode() {
        var job = JobFixture.job()
        _ = job.apply(.audio, .failed(falError), at: t0)
        #expect(job.apply(.audio, .retry, at: t1).outcome == .changed)
        #expect(job.submissionsDue == [.video, .audio])
    }

    @Test func parallelVideoFailureLeavesTheAudioAlone() {
        var job = JobFixture.job(mode: .parallel)
        _ = job.apply(.audio, JobFixture.accepted("a"), at: t0)
        _ = job.apply(.video, .failed(falError), at: t1)
        #expect(job.audio?.status == .queued)
        #expect(job.status == .failed)
    }

    @Test func cancelCancelsUnfinishedTasksAndAsksFalForAcceptedOnes() {
        var job = JobFixture.job()
        _ = job.apply(.video, JobFixture.accepted("v"), at: t0)
        _ = job.apply(.audio, .submitStarted(attempt: "a1"), at: t0)  // in flight, no request id yet
        let transition = job.cancel(at: t1)
        #expect(transition.outcome == .changed)
        #expect(transition.actions == [.cancelAtFal(.video)])
        #expect(job.status == .canceled && job.canceled)
        #expect(job.video.status == .canceled && job.audio?.status == .canceled)
        #expect(job.updatedAt == t1)
        // The in-flight submit's response arrives: recorded, and fal is asked to cancel it.
        let late = job.apply(.audio, JobFixture.accepted("a"), at: t2)
        #expect(late.outcome == .changed && late.actions == [.cancelAtFal(.audio)])
        #expect(job.audio?.status == .canceled)
        // Late webhooks change nothing.
        #expect(job.apply(.video, .completed(mediaURL: "v"), at: t2).outcome != .changed)
    }

    @Test func cancelKeepsFinishedTasks() {
        var job = JobFixture.job()
        _ = job.apply(.video, JobFixture.accepted("v"), at: t0)
        _ = job.apply(.video, .completed(mediaURL: "v"), at: t0)
        _ = job.apply(.audio, JobFixture.accepted("a"), at: t0)
        let transition = job.cancel(at: t1)
        #expect(transition.actions == [.cancelAtFal(.audio)])
        #expect(job.video.status == .completed && job.audio?.status == .canceled)
        #expect(job.status == .canceled)
    }

    @Test func cancelOnAFinishedJobIsIgnored() {
        var job = JobFixture.job(audio: false)
        _ = job.apply(.video, .completed(mediaURL: "v"), at: t0)
        let before = job
        let transition = job.cancel(at: t1)
        #expect(!transition.outcome.isChanged && transition.actions.isEmpty)
        #expect(job == before)
        var canceled = JobFixture.job()
        _ = canceled.cancel(at: t0)
        #expect(!canceled.cancel(at: t1).outcome.isChanged)
    }

    @Test func cancelInAfterVideoBeforeAudioSubmit() {
        var job = JobFixture.job(mode: .afterVideo)
        _ = job.apply(.video, .completed(mediaURL: "v"), at: t0)
        _ = job.cancel(at: t1)
        #expect(job.audio?.status == .canceled)
        #expect(job.apply(.audio, .submitStarted(attempt: "a1"), at: t1).outcome != .changed)
    }

    @Test func codableRoundTrip() throws {
        var job = JobFixture.job(mode: .afterVideo)
        job.metadata = #"{"a":1}"#
        job.videoOptions = VideoOptions(aspectRatio: "16:9", resolution: "720p", seed: 42, negativePrompt: "blur")
        _ = job.apply(.video, .completed(mediaURL: "v"), at: t1)
        let decoded = try JSONDecoder().decode(Job.self, from: JSONEncoder().encode(job))
        #expect(decoded == job)
        #expect(String(decoding: try JSONEncoder().encode(AudioMode.afterVideo), as: UTF8.self) == #""after-video""#)
    }
}
