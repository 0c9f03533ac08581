import Foundation
import Testing

@testable import Clapper

@Suite struct JobTaskTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    var t1: Date { t0.addingTimeInterval(1) }
    var t2: Date { t0.addingTimeInterval(2) }

    func task(_ status: TaskStatus = .pending, requestID: String? = nil) -> JobTask {
        JobTask(kind: .video, model: "fal-ai/ltx-video-13b-distilled", status: status, falRequestID: requestID)
    }

    static let accepted = TaskEvent.accepted(requestID: "r1", statusURL: "s1", responseURL: "p1", cancelURL: "c1")

    @Test func statusRawValuesAndTerminality() {
        #expect(TaskStatus.timedOut.rawValue == "timed_out")
        #expect(TaskKind.video.rawValue == "video" && TaskKind.audio.rawValue == "audio")
        #expect(TaskStatus.allCases.filter(\.isTerminal) == [.completed, .failed, .canceled, .timedOut])
    }

    @Test func happyPath() {
        var t = task()
        #expect(t.apply(.submitStarted(attempt: "a1"), at: t0) == .changed)
        #expect(t.submitStartedAt == t0 && t.attempts == 1 && t.status == .pending)
        #expect(t.apply(Self.accepted, at: t1) == .changed)
        #expect(t.status == .queued && t.falRequestID == "r1" && t.statusURL == "s1" && t.responseURL == "p1" && t.cancelURL == "c1")
        #expect(t.submittedAt == t1)
        #expect(t.apply(.running, at: t1) == .changed)
        #expect(t.apply(.completed(mediaURL: "https://m/v.mp4"), at: t2) == .changed)
        #expect(t.status == .completed && t.mediaURL == "https://m/v.mp4" && t.completedAt == t2 && t.error == nil)
    }

    @Test func submitStartedOnlyOnceAndOnlyWhilePending() {
        var t = task()
        #expect(t.apply(.submitStarted(attempt: "a1"), at: t0) == .changed)
        let snapshot = t
        #expect(!t.apply(.submitStarted(attempt: "a1"), at: t1).isChanged)
        #expect(t == snapshot)
        var queued = task(.queued, requestID: "r1")
        #expect(!queued.apply(.submitStarted(attempt: "a1"), at: t1).isChanged)
    }

    @Test(arguments: [
        (TaskStatus.queued, TaskEvent.queued),
        (.running, .running),
        (.running, .queued),
        (.completed, .queued),
        (.completed, .running),
        (.completed, .completed(mediaURL: "x")),
        (.completed, .failed(TaskError(code: "fal_error", message: "boom"))),
        (.completed, .canceled),
        (.completed, .timedOut),
        (.failed, .completed(mediaURL: "x")),
        (.failed, .running),
        (.canceled, .completed(mediaURL: "x")),
        (.canceled, .failed(TaskError(code: "fal_error", message: "boom"))),
        (.timedOut, .canceled),
        (.timedOut, .failed(TaskError(code: "fal_error", message: "boom"))),
        (.pending, .retry),
        (.queued, .retry),
        (.running, .retry),
        (.completed, .retry),
        (.canceled, .retry),
    ])
    func ignoredEventsLeaveTheTaskUntouched(status: TaskStatus, event: TaskEvent) {
        var t = task(status, requestID: status == .pending ? nil : "r1")
        let before = t
        let outcome = t.apply(event, at: t2)
        guard case .ignored(let reason) = outcome else {
            Issue.record("\(event) on \(status) should be ignored")
            return
        }
        #expect(!reason.isEmpty)
        #expect(t == before)
    }

    @Test(arguments: [
        (TaskStatus.pending, TaskEvent.queued, TaskStatus.queued),
        (.pending, .running, .running),
        (.queued, .running, .running),
        (.pending, .completed(mediaURL: "u"), .completed),
        (.pending, .failed(TaskError(code: "fal_error", message: "m")), .failed),
        (.pending, .canceled, .canceled),
        (.pending, .timedOut, .timedOut),
        (.queued, .completed(mediaURL: "u"), .completed),
        (.running, .failed(TaskError(code: "fal_error", message: "m")), .failed),
        (.running, .canceled, .canceled),
        (.running, .timedOut, .timedOut),
    ])
    func forwardMovesApply(from: TaskStatus, event: TaskEvent, to: TaskStatus) {
        var t = task(from)
        #expect(t.apply(event, at: t1) == .changed)
        #expect(t.status == to)
        if to.isTerminal { #expect(t.completedAt == t1) }
    }

    @Test func failedKeepsTheErrorAndTimedOutGetsOne() {
        var t = task(.running, requestID: "r1")
        let error = TaskError(code: "fal_error", message: "Invalid status code: 422", detail: #"{"detail":"nope"}"#)
        #expect(t.apply(.failed(error), at: t1) == .changed)
        #expect(t.error == error)
        var u = task(.queued, requestID: "r2")
        #expect(u.apply(.timedOut, at: t1) == .changed)
        #expect(u.error?.code == "timed_out")
    }

    @Test func terminalEventBeforeTheSubmitResponseThenTheResponse() {
        // The webhook lands before the submit response was stored.
        var t = task()
        _ = t.apply(.submitStarted(attempt: "a1"), at: t0)
        #expect(t.apply(.completed(mediaURL: "u"), at: t1) == .changed)
        #expect(t.status == .completed)
        // The submit response records the ids but does not move the status back.
        #expect(t.apply(Self.accepted, at: t2) == .changed)
        #expect(t.status == .completed && t.falRequestID == "r1" && t.cancelURL == "c1" && t.submittedAt == t2)
        // An identical repeat is ignored.
        let before = t
        #expect(!t.apply(Self.accepted, at: t2).isChanged)
        #expect(t == before)
    }

    @Test func acceptedRepeatWhileQueuedIsIgnoredAndAnotherRequestIDIsRejected() {
        var t = task()
        #expect(t.apply(Self.accepted, at: t0) == .changed)
        #expect(!t.apply(Self.accepted, at: t1).isChanged)
        let before = t
        #expect(!t.apply(.accepted(requestID: "other", statusURL: nil, responseURL: nil, cancelURL: nil), at: t1).isChanged)
        #expect(t == before)
        #expect(t.submittedAt == t0)
    }

    @Test func acceptedFillsMissingURLsOnly() {
        var t = task()
        #expect(t.apply(.accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: t0) == .changed)
        #expect(t.apply(.running, at: t0) == .changed)
        #expect(t.apply(.accepted(requestID: "r1", statusURL: "s", responseURL: "p", cancelURL: "c"), at: t1) == .changed)
        #expect(t.status == .running && t.statusURL == "s" && t.cancelURL == "c")
        #expect(!t.apply(.accepted(requestID: "r1", statusURL: "s2", responseURL: "p2", cancelURL: "c2"), at: t1).isChanged)
        #expect(t.statusURL == "s")
    }

    @Test(arguments: [TaskStatus.failed, .timedOut])
    func retryStartsANewAttempt(from: TaskStatus) {
        var t = task()
        _ = t.apply(.submitStarted(attempt: "a1"), at: t0)
        _ = t.apply(Self.accepted, at: t0)
        _ = t.apply(from == .failed ? .failed(TaskError(code: "fal_error", message: "m")) : .timedOut, at: t1)
        #expect(t.apply(.retry, at: t2) == .changed)
        #expect(t.status == .pending)
        #expect(t.falRequestID == nil && t.statusURL == nil && t.cancelURL == nil && t.error == nil)
        #expect(t.submitStartedAt == nil && t.submittedAt == nil && t.completedAt == nil)
        #expect(t.previousRequestIDs == ["r1"])
        #expect(t.isFromPreviousAttempt(requestID: "r1"))
        #expect(!t.isFromPreviousAttempt(requestID: "r2"))
        // The old request's submit response (late) does not attach to the new attempt.
        #expect(!t.apply(Self.accepted, at: t2).isChanged)
        #expect(t.apply(.submitStarted(attempt: "a1"), at: t2) == .changed)
        #expect(t.attempts == 2)
        #expect(t.apply(.accepted(requestID: "r2", statusURL: nil, responseURL: nil, cancelURL: nil), at: t2) == .changed)
        #expect(t.falRequestID == "r2" && t.status == .queued)
    }

    @Test func submitStateForCrashRecovery() {
        var t = task()
        #expect(t.submitState == .notStarted)
        _ = t.apply(.submitStarted(attempt: "a1"), at: t0)
        #expect(t.submitState == .outcomeUnknown)
        _ = t.apply(.failed(TaskError(code: "submit_outcome_unknown", message: "gateway restarted mid-submit")), at: t1)
        _ = t.apply(.retry, at: t1)
        #expect(t.submitState == .notStarted)
        _ = t.apply(.submitStarted(attempt: "a1"), at: t2)
        _ = t.apply(Self.accepted, at: t2)
        #expect(t.submitState == .accepted)
    }

    @Test func codableRoundTrip() throws {
        var t = task()
        _ = t.apply(.submitStarted(attempt: "a1"), at: t0)
        _ = t.apply(Self.accepted, at: t1)
        _ = t.apply(.failed(TaskError(code: "fal_error", message: "m", detail: "{}")), at: t2)
        let data = try JSONEncoder().encode(t)
        #expect(try JSONDecoder().decode(JobTask.self, from: data) == t)
        #expect(String(decoding: try JSONEncoder().encode(TaskStatus.timedOut), as: UTF8.self) == #""timed_out""#)
    }
}

@Suite struct JobTaskSubmitAbandonedTests {
    @Test func anAbandonedSubmitGoesBackToNotStartedOnlyWhileNothingIsKnownAtFal() {
        let t0 = Date(timeIntervalSince1970: 1_000)
        var task = JobTask(kind: .video, model: "m")
        #expect(task.apply(.submitAbandoned(attempt: "a1"), at: t0) == .ignored(reason: "no submit of this attempt in flight to abandon"))
        #expect(task.apply(.submitStarted(attempt: "a1"), at: t0) == .changed)
        #expect(task.submitState == .outcomeUnknown)
        // Another try's abandon (a stale one) leaves this try's mark alone.
        #expect(!task.apply(.submitAbandoned(attempt: "other"), at: t0).isChanged)
        #expect(task.submitState == .outcomeUnknown)
        #expect(task.apply(.submitAbandoned(attempt: "a1"), at: t0) == .changed)
        #expect(task.submitState == .notStarted)
        #expect(task.status == .pending)
        // Started again and accepted: nothing to abandon any more.
        _ = task.apply(.submitStarted(attempt: "a1"), at: t0)
        _ = task.apply(.accepted(requestID: "r", statusURL: nil, responseURL: nil, cancelURL: nil), at: t0)
        let before = task
        #expect(!task.apply(.submitAbandoned(attempt: "a1"), at: t0).isChanged)
        #expect(task == before)
    }
}
