@testable import FalSim
import Testing

@Suite struct FalSimStateMachineTests {
    @Test func queuedRequestsStartWhenReadyAndInOrder() {
        var queue = FalSimQueueStateMachine(concurrency: 1)
        queue.submit("a")
        queue.submit("b")
        queue.submit("c")
        #expect(queue.queuePosition(of: "c") == 2)
        #expect(queue.queueDelayElapsed("b") == ["b"])
        #expect(queue.phase(of: "b") == .running)
        #expect(queue.queuePosition(of: "c") == 1)
        #expect(queue.queueDelayElapsed("a") == [])
        #expect(queue.queueDelayElapsed("c") == [])
        #expect(queue.finish("b") == ["a"])
        #expect(queue.queuePosition(of: "c") == 0)
        #expect(queue.finish("a") == ["c"])
        #expect(queue.finish("c") == [])
        #expect(queue.phase(of: "c") == .completed)
    }

    /// `X-Fal-Queue-Priority: low` waits behind every normal request, FIFO within each.
    @Test func lowPriorityWaitsBehindNormal() {
        var queue = FalSimQueueStateMachine(concurrency: 1)
        queue.submit("busy")
        #expect(queue.queueDelayElapsed("busy") == ["busy"])
        queue.submit("low1", lowPriority: true)
        queue.submit("normal1")
        queue.submit("low2", lowPriority: true)
        queue.submit("normal2")
        #expect(queue.queuePosition(of: "normal1") == 0)
        #expect(queue.queuePosition(of: "normal2") == 1)
        #expect(queue.queuePosition(of: "low1") == 2)
        #expect(queue.queuePosition(of: "low2") == 3)
        for id in ["low1", "low2", "normal1", "normal2"] { _ = queue.queueDelayElapsed(id) }
        #expect(queue.finish("busy") == ["normal1"])
        #expect(queue.finish("normal1") == ["normal2"])
        #expect(queue.finish("normal2") == ["low1"])
        #expect(queue.cancel("low2") == .canceledWhileQueued)
        queue.submit("normal3")
        #expect(queue.queuePosition(of: "normal3") == 0)
    }

    @Test func unlimitedConcurrencyStartsEveryReadyRequest() {
        var queue = FalSimQueueStateMachine(concurrency: nil)
        queue.submit("a")
        queue.submit("b")
        #expect(queue.queueDelayElapsed("a") == ["a"])
        #expect(queue.queueDelayElapsed("b") == ["b"])
        #expect(queue.runningCount == 2)
    }

    @Test func cancelRules() {
        var queue = FalSimQueueStateMachine(concurrency: 1)
        queue.submit("a")
        queue.submit("b")
        _ = queue.queueDelayElapsed("a")
        #expect(queue.cancel("b") == .canceledWhileQueued)
        #expect(queue.phase(of: "b") == .completed)
        #expect(queue.cancel("a") == .requestedWhileRunning)
        #expect(queue.phase(of: "a") == .running)
        #expect(queue.finish("a") == [])
        #expect(queue.cancel("a") == .alreadyCompleted)
        #expect(queue.cancel("zzz") == .notFound)
        #expect(queue.queueDelayElapsed("b") == [])
    }

    @Test func retryScheduleIsTenTriesOverAboutTwoHours() {
        let real = FalSimWebhookRetrySchedule(scale: 1)
        let waits = (2...10).compactMap { real.delay(beforeAttempt: $0) }
        #expect(waits.count == 9)
        #expect(real.delay(beforeAttempt: 11) == nil)
        let total = waits.reduce(Duration.zero, +)
        #expect(total > .seconds(6600) && total <= .seconds(7200))
        #expect(FalSimWebhookRetrySchedule(scale: 0.001).delay(beforeAttempt: 2) == .milliseconds(15))
    }

    @Test func faultNamesParse() throws {
        let faults = try FalSimFaults(names: ["fail", "delay-webhook=250", "submit-503", "hold-webhook"])
        #expect(faults.fail && faults.holdWebhook)
        #expect(faults.webhookDelay == .milliseconds(250))
        #expect(faults.submitStatus == 503)
        #expect(throws: FalSimError.self) { try FalSimFaults(names: ["explode"]) }
    }

    @Test func appPathDropsTheSubpath() {
        #expect(FalSimRoutes.appPath(ofModel: "fal-ai/ltx-video-13b-distilled") == "fal-ai/ltx-video-13b-distilled")
        #expect(FalSimRoutes.appPath(ofModel: "fal-ai/mmaudio-v2/text-to-audio") == "fal-ai/mmaudio-v2")
        #expect(FalSimRoutes.appPath(ofModel: "fal-ai/ffmpeg-api/merge-audio-video") == "fal-ai/ffmpeg-api")
        #expect(FalSimRoutes.appPath(ofModel: "workflows/me/flow/x") == "workflows/me/flow")
        #expect(FalSimRoutes.appPath(ofModel: "comfy/me/graph") == "comfy/me/graph")
    }

    @Test func wavHasTheRequestedDuration() {
        let wav = FalSimMedia.wav(seconds: 2.5)
        #expect(wav.count == FalSimMedia.wavSize(seconds: 2.5))
        #expect(wav.count == 44 + 20000 * 2)
        #expect(Array(wav[0..<4]) == Array("RIFF".utf8))
        #expect(Array(FalSimMedia.mp4[4..<8]) == Array("ftyp".utf8))
    }
}
