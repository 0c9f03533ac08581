@testable import Clapper
import Foundation
import Testing

/// The pure rules that keep what fal produced: a result for a task given up without fal's word
/// lands; a submit mark names its writer; a task's give-up clock starts when it became due.
@Suite struct LateResultRuleTests {
    let t0 = Date(timeIntervalSince1970: 1_000)
    let t1 = Date(timeIntervalSince1970: 1_100)
    let t2 = Date(timeIntervalSince1970: 1_200)
    let unknown = TaskError(code: TaskError.submitOutcomeUnknownCode, message: "no answer")

    @Test func aLateResultLandsOnATimedOutTask() {
        var task = JobTask(kind: .video, model: "m")
        _ = task.apply(.submitStarted(attempt: "a"), at: t0)
        _ = task.apply(.accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: t0)
        _ = task.apply(.timedOut, at: t1)
        #expect(task.acceptsLateResult)
        #expect(task.apply(.completed(mediaURL: "https://v"), at: t2) == .changed)
        #expect(task.status == .completed && task.mediaURL == "https://v" && task.error == nil && task.completedAt == t2)
        // Once completed, nothing more moves it.
        #expect(!task.acceptsLateResult)
        #expect(!task.apply(.completed(mediaURL: "https://other"), at: t2).isChanged)
    }

    @Test func aLateResultLandsOnAnUnknownSubmitWithItsRequestID() {
        var task = JobTask(kind: .video, model: "m")
        _ = task.apply(.submitStarted(attempt: "a"), at: t0)
        _ = task.apply(.failed(unknown), at: t1)
        #expect(task.apply(.accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: t2) == .changed)
        #expect(task.apply(.completed(mediaURL: "https://v"), at: t2) == .changed)
        #expect(task.status == .completed && task.falRequestID == "r1" && task.error == nil)
    }

    @Test func falsOwnErrorReplacesAnUnknownOutcomeButNothingElse() {
        var task = JobTask(kind: .video, model: "m")
        _ = task.apply(.submitStarted(attempt: "a"), at: t0)
        _ = task.apply(.failed(unknown), at: t1)
        #expect(!task.apply(.failed(unknown), at: t2).isChanged, "the same verdict again is a repeat")
        #expect(task.apply(.failed(TaskError(code: "fal_error", message: "Invalid status code: 422")), at: t2) == .changed)
        #expect(task.error?.code == "fal_error")
        // fal's own failure is final: no later success or error moves it.
        #expect(!task.acceptsLateResult)
        #expect(!task.apply(.completed(mediaURL: "https://v"), at: t2).isChanged)
        #expect(!task.apply(.failed(TaskError(code: "other", message: "x")), at: t2).isChanged)
    }

    @Test func canceledAndFailedTasksTakeNoLateResult() {
        for end in [TaskEvent.canceled, .failed(TaskError(code: "fal_error", message: "x")), .failed(TaskError(code: "submit_failed", message: "x"))] {
            var task = JobTask(kind: .video, model: "m")
            _ = task.apply(end, at: t0)
            let before = task
            #expect(!task.apply(.completed(mediaURL: "https://v"), at: t1).isChanged, "\(end)")
            #expect(task == before)
        }
    }

    @Test func aMarkNamesItsWriter() {
        var task = JobTask(kind: .audio, model: "m")
        #expect(task.apply(.submitStarted(attempt: "mine"), at: t0) == .changed)
        #expect(task.submitAttempt == "mine" && task.lastTriedAt == t0)
        // A second writer is refused; the mark still names the first.
        #expect(!task.apply(.submitStarted(attempt: "theirs"), at: t1).isChanged)
        #expect(task.submitAttempt == "mine")
        #expect(!task.apply(.submitAbandoned(attempt: "theirs"), at: t1).isChanged)
        #expect(task.apply(.submitAbandoned(attempt: "mine"), at: t1) == .changed)
        #expect(task.submitAttempt == nil && task.submitStartedAt == nil && task.lastTriedAt == t0)
    }

    func afterVideoJob() -> Job {
        Job(
            id: "j", userID: "u", createdAt: t0, prompt: "p", durationSeconds: 2,
            feature: JobFeature(audio: true, audioTier: "synced"), audioMode: .afterVideo,
            video: JobTask(kind: .video, model: "v"), audio: JobTask(kind: .audio, model: "a")
        )
    }

    @Test func aLateVideoResultBringsBackTheAudioItDroppedAndSubmitsIt() {
        var job = afterVideoJob()
        _ = job.apply(.video, .submitStarted(attempt: "a"), at: t0)
        _ = job.apply(.video, .failed(unknown), at: t1)
        #expect(job.status == .failed && job.audio?.status == .canceled && job.audio?.error == .videoFailed)
        _ = job.apply(.video, .accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: t2)
        let transition = job.apply(.video, .completed(mediaURL: "https://v"), at: t2)
        #expect(transition.outcome == .changed)
        #expect(transition.actions == [.submit(.audio)])
        #expect(job.audio?.status == .pending && job.audio?.error == nil)
        #expect(job.status == .running)
        #expect(job.submissionsDue == [.audio])
    }

    @Test func anAfterVideoAudioIsDueFromTheVideosCompletionNotTheJobsCreation() {
        var job = afterVideoJob()
        #expect(job.dueSince(.video) == t0)
        #expect(job.dueSince(.audio) == nil, "waits for the video")
        _ = job.apply(.video, .submitStarted(attempt: "a"), at: t0)
        _ = job.apply(.video, .accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: t0)
        _ = job.apply(.video, .completed(mediaURL: "https://v"), at: t2)
        #expect(job.dueSince(.audio) == t2)
    }

    @Test func aRetryRestartsTheClock() {
        var job = afterVideoJob()
        job.audioMode = .parallel
        _ = job.apply(.audio, .submitStarted(attempt: "a"), at: t0)
        _ = job.apply(.audio, .failed(TaskError(code: "submit_failed", message: "x")), at: t0)
        _ = job.apply(.audio, .retry, at: t2)
        #expect(job.dueSince(.audio) == t2)
        #expect(job.dueSince(.video) == t0)
    }
}

@Suite struct DateMillisecondsTests {
    @Test func datesFromDamagedRecordsNeverTrap() {
        #expect(Date(timeIntervalSince1970: 1.2345).milliseconds == 1235)
        #expect(Date(timeIntervalSince1970: 1e300).milliseconds == .max)
        #expect(Date(timeIntervalSince1970: -1e300).milliseconds == .min)
        #expect(Date(timeIntervalSince1970: .nan).milliseconds == 0)
        #expect(Timestamp.iso8601(Date(timeIntervalSince1970: 1e300)) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.iso8601(Date(timeIntervalSince1970: 0.5)) == "1970-01-01T00:00:00.500Z")
    }
}
