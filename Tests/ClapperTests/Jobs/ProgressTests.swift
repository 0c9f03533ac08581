import Clapper
import FalSim
import Foundation
import Redis
import Testing
import TestSupport

/// Progress (issue 15 item 2): the rules without I/O.
@Suite("Progress: bounded lines, task rules, poll gaps (no I/O)")
struct ProgressRuleTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func aFloodOfLinesKeepsTheNewestFewEachCut() {
        let long = String(repeating: "é", count: 5000)  // 10,000 bytes of two-byte characters
        let lines = (1...1000).map { TaskProgress.LogLine(message: "line \($0)") } + [TaskProgress.LogLine(message: long, level: String(repeating: "L", count: 99))]
        let progress = TaskProgress(queuePosition: 3, logs: lines)
        #expect(progress.logs.map(\.message).prefix(4) == ["line 997", "line 998", "line 999", "line 1000"])
        #expect(progress.logs.count == TaskProgress.maxLines)
        let cut = progress.logs[4].message
        #expect(cut.utf8.count <= TaskProgress.maxLineBytes)
        #expect(cut.hasSuffix("…"))
        #expect(cut.dropLast().allSatisfy { $0 == "é" }, "cut at a character boundary")
        #expect(progress.logs[4].level?.utf8.count == 16)
    }

    func accepted(_ status: TaskStatus = .queued) -> JobTask {
        var task = JobTask(kind: .video, model: "fal-ai/ltx-video-13b-distilled")
        _ = task.apply(.accepted(requestID: "r1", statusURL: "s", responseURL: "r", cancelURL: "c"), at: now)
        if status == .running { _ = task.apply(.running, at: now) }
        return task
    }

    @Test func progressMovesOnlyATaskAtFalAndOnlyWhenItDiffers() {
        var pending = JobTask(kind: .video, model: "m")
        #expect(pending.apply(.progress(TaskProgress(queuePosition: 2)), at: now) == .ignored(reason: "progress of a pending task"))

        var task = accepted()
        #expect(task.apply(.progress(TaskProgress(queuePosition: 2)), at: now).isChanged)
        #expect(!task.apply(.progress(TaskProgress(queuePosition: 2)), at: now).isChanged, "a repeat is no change")
        #expect(task.apply(.progress(TaskProgress(queuePosition: 1)), at: now).isChanged, "a position change is a change")
        #expect(task.startedAt == nil)

        let later = now.addingTimeInterval(5)
        #expect(task.apply(.running, at: later).isChanged)
        #expect(task.startedAt == later)
        #expect(task.progress == nil, "running: no queue position")
        // A running task keeps no position even if a status says one.
        #expect(task.apply(.progress(TaskProgress(queuePosition: 4, logs: [.init(message: "step 1")])), at: later).isChanged)
        #expect(task.progress == TaskProgress(logs: [.init(message: "step 1")]))
        #expect(task.apply(.running, at: later.addingTimeInterval(1)) == .ignored(reason: "already running"))
        #expect(task.startedAt == later, "the start is the first time it was seen running")

        #expect(task.apply(.completed(mediaURL: "https://x/v.mp4"), at: later).isChanged)
        #expect(task.progress?.logs.map(\.message) == ["step 1"], "the last lines stay on the finished task")
        #expect(task.apply(.progress(TaskProgress(logs: [.init(message: "late")])), at: later) == .ignored(reason: "progress of a completed task"))
    }

    @Test func aRetryForgetsTheOldAttemptsProgress() {
        var task = accepted(.running)
        _ = task.apply(.progress(TaskProgress(logs: [.init(message: "x")])), at: now)
        _ = task.apply(.failed(TaskError(code: "fal_error", message: "boom")), at: now)
        #expect(task.apply(.retry, at: now).isChanged)
        #expect(task.progress == nil)
        #expect(task.startedAt == nil)
    }

    @Test func pollsComeLessOftenFarBackInTheQueueAndNeverOverflow() {
        let policy = ProgressPolicy(interval: .seconds(2), maxInterval: .seconds(30))
        var task = accepted()
        #expect(policy.gap(for: JobTask(kind: .video, model: "m")) == nil, "not at fal: not followed")
        #expect(policy.gap(for: task) == .seconds(2))
        for (position, gap) in [(0, 2), (1, 2), (5, 10), (15, 30), (16, 30), (Int.max, 30)] {
            _ = task.apply(.progress(TaskProgress(queuePosition: position)), at: now)
            #expect(policy.gap(for: task) == .seconds(gap), "position \(position)")
        }
        _ = task.apply(.running, at: now)
        #expect(policy.gap(for: task) == .seconds(2))
        _ = task.apply(.completed(mediaURL: nil), at: now)
        #expect(policy.gap(for: task) == nil)
        #expect(policy.next(for: accepted(), after: now, notLaterThan: now.addingTimeInterval(60)) == now.addingTimeInterval(2))
        #expect(policy.next(for: accepted(), after: now, notLaterThan: now.addingTimeInterval(1)) == now.addingTimeInterval(1))
    }

    @Test func theViewShowsPositionStartAndLines() throws {
        var job = Job(id: "j1", userID: "u", createdAt: now, prompt: "p", durationSeconds: 2, feature: JobFeature(audio: false), audioMode: .parallel, video: accepted())
        _ = job.apply(.video, .progress(TaskProgress(queuePosition: 3)), at: now)
        var view = try #require(try JSONSerialization.jsonObject(with: Data(JobView.encode(job, videoOutput: nil, audioOutput: nil))) as? [String: Any])
        #expect(view["videoQueuePosition"] as? Int == 3)
        #expect(view["videoStartedAt"] is NSNull)
        #expect(view["videoLogs"] is NSNull)
        #expect(view["audioQueuePosition"] is NSNull && view["audioLogs"] is NSNull && view["audioStartedAt"] is NSNull)
        _ = job.apply(.video, .running, at: now)
        _ = job.apply(.video, .progress(TaskProgress(logs: [.init(message: "a \"quoted\"\nline", level: "INFO", timestamp: "t")])), at: now)
        view = try #require(try JSONSerialization.jsonObject(with: Data(JobView.encode(job, videoOutput: nil, audioOutput: nil))) as? [String: Any])
        #expect(view["videoQueuePosition"] is NSNull)
        #expect(view["videoStartedAt"] as? String == "2027-01-15T08:00:00.000Z")
        let logs = try #require(view["videoLogs"] as? [[String: Any]])
        #expect(logs.count == 1)
        #expect(logs.first?["message"] as? String == "a \"quoted\"\nline")
        #expect(logs.first?["level"] as? String == "INFO")
    }
}

/// Progress end to end: fal-sim runs one request at a time, so positions are real; the
/// reconciler follows tasks at fal every 100 ms.
@Suite("Progress: queue position and fal's log lines in the view and over SSE, end to end")
struct ProgressEndToEndTests {
    let userID = "progress-\(UUID().uuidString.prefix(6))"
    var alice: String { TestUsers.token(userID) }

    static let progress = ProgressPolicy(interval: .milliseconds(100), maxInterval: .milliseconds(400))

    static func body(_ prompt: String) -> [UInt8] {
        Array(#"{"prompt":"\#(prompt)","durationSeconds":2}"#.utf8)
    }

    static func following(_ configuration: inout ClapperConfiguration) {
        ReconcileSetup.on(&configuration)
        configuration.progress = progress
    }

    func create(_ prompt: String, on gateway: Gateway) async throws -> String {
        let reply = try await gateway.send(.POST, "/v1/jobs", token: alice, body: Self.body(prompt))
        #expect(reply.status == 202, "\(reply.text)")
        return try #require(reply.json["jobId"] as? String)
    }

    @Test(.timeLimit(.minutes(1)))
    func positionsAndLinesReachTheViewAndTheStream() async throws {
        var setup = SimSetup()
        setup.concurrency = 1
        setup.runDelay = .milliseconds(400)
        try await withGateway(.sim(setup, Self.following)) { stack in
            let run = UUID().uuidString.prefix(6)
            // The blocker, then `first`, hold fal's one slot until released: positions stay put
            // for as long as the test needs, however slowly a loaded machine polls.
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "blocker \(run)", faults: ["hold-run"]))
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "first \(run)", faults: ["hold-run"]))
            let blocker = try await create("blocker \(run)", on: stack.gateway)
            let running = try await waitForJob(blocker, gateway: stack.gateway, redis: stack.server, token: alice) { view in
                view["videoStatus"] as? String == "running" && view["videoLogs"] is [Any]
            }
            #expect(running["videoStartedAt"] is String)
            let lines = try #require(running["videoLogs"] as? [[String: Any]])
            #expect(lines.first?["message"] as? String == "fal-sim: running fal-ai/ltx-video-13b-distilled")

            let first = try await create("first \(run)", on: stack.gateway)
            let second = try await create("second \(run)", on: stack.gateway)
            let stream = try await stack.open(stack.jobs.jobPath(second, user: userID))
            #expect(stream.status == 200)
            _ = try await waitForJob(first, gateway: stack.gateway, redis: stack.server, token: alice) { $0["videoQueuePosition"] as? Int == 0 }
            _ = try await waitForJob(second, gateway: stack.gateway, redis: stack.server, token: alice) { $0["videoQueuePosition"] as? Int == 1 }

            // The blocker ends, `first` runs: `second` moves up, and its stream says so.
            #expect(await stack.sim.releaseHeldRuns() == [try #require(running["videoRequestId"] as? String)])
            var positions: [Int] = []
            var released = false
            while let frame = try await stream.nextEvent() {
                guard let data = frame.data, let view = try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else { continue }
                if let position = view["videoQueuePosition"] as? Int, positions.last != position { positions.append(position) }
                if positions.last == 0, !released {
                    // `first` runs (held): let it finish, so `second` runs and ends.
                    released = await stack.sim.releaseHeldRuns().count == 1
                }
                if isFinished(view) {
                    #expect(view["status"] as? String == "completed")
                    #expect(view["videoQueuePosition"] is NSNull, "a finished task has no position")
                    break
                }
            }
            #expect(positions == [1, 0] || positions == [0], "the stream saw the move to the front: \(positions)")
            #expect(released)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aLogStormIsCoalescedToOneSmallChangePerPoll() async throws {
        try await withGateway(.sim(SimSetup(), Self.following)) { stack in
            let run = UUID().uuidString.prefix(6)
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "storm \(run)", faults: ["hold-run", "log-storm"]))
            let id = try await create("storm \(run)", on: stack.gateway)
            let accepted = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice) { $0["videoRequestId"] is String }
            let requestID = try #require(accepted["videoRequestId"] as? String)
            // Each poll while it runs reports 1,000 new lines.
            let polled = try #require(await stack.sim.wait(requestID: requestID) { $0.statusPolls >= 12 })
            let view = try await stack.gateway.job(id, token: alice)
            let logs = try #require(view["videoLogs"] as? [[String: Any]])
            #expect(logs.count == TaskProgress.maxLines)
            let last = try #require(logs.last?["message"] as? String)
            #expect(last.hasPrefix("fal-sim: step ") && last.hasSuffix("000"), "the newest line of a whole poll: \(last)")
            let version = try #require(view["version"] as? Int)
            // One change per poll at most (plus creation, submit mark, acceptance, running), however
            // many lines fal printed: 12,000+ lines made at most that many versions.
            let polls = try #require(await stack.sim.request(id: requestID)).statusPolls
            #expect(version <= polls + 4, "version \(version) after \(polls) polls (\(polled.statusPolls) when read)")
            let redis = RedisClient(configuration: RedisConfiguration(url: stack.server.url))
            let stored = try await redis.send("HGET", "clapper:{\(id)}:job", "view")
            await redis.shutdown()
            #expect((stored.string?.utf8.count ?? .max) < 8 * 1024, "the stored view stays small")
            #expect(await stack.sim.releaseHeldRuns().count == 1)
            _ = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice, until: isFinished)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func twoInstancesFollowATaskOnce() async throws {
        let options = GatewayOptions(fal: .sim(SimSetup().configuration), gateways: 2, configure: Self.following)
        try await withGateway(options) { stack in
            let run = UUID().uuidString.prefix(6)
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "followed \(run)", faults: ["hold-run"]))
            let id = try await create("followed \(run)", on: stack.gateways[1])
            let accepted = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice) { $0["videoRequestId"] is String }
            let requestID = try #require(accepted["videoRequestId"] as? String)
            _ = await stack.sim.wait(requestID: requestID) { $0.statusPolls >= 1 }
            let start = ContinuousClock.now
            _ = await stack.sim.wait(requestID: requestID) { $0.statusPolls >= 21 }
            let elapsed = ContinuousClock.now - start
            // One follower asks every 100 ms at most: 20 polls take 2 s (1.6 s allowing for the
            // network's jitter); two followers would take about half that. Load only slows polls.
            #expect(elapsed >= .milliseconds(1600), "20 polls in \(elapsed): followed more than once")
            #expect(await stack.sim.releaseHeldRuns().count == 1)
            _ = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice, until: isFinished)
        }
    }
}
