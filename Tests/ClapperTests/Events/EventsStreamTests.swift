import AsyncHTTPClient
@testable import Clapper
import Foundation
import Redis
import Testing
import TestSupport

@Suite("Events: job streams over real sockets")
struct EventsStreamTests {
    @Test(.timeLimit(.minutes(1)))
    func snapshotThenChangesInOrderThenDone() async throws {
        try await withGateway(.noFal()) { context in
            let job = uniqueID()
            let id1 = try await context.jobs.create(job, user: "alice", prompt: "line one\nline two\r\u{2028}\u{2029}\u{85}end")
            let stream = try await context.open(context.jobs.jobPath(job, user: "alice"))
            #expect(stream.status == 200)
            #expect(stream.header("content-type")?.hasPrefix("text/event-stream") == true)

            let retry = try await stream.next()
            #expect(retry?.retry == EventsController.retryMilliseconds)
            let snapshot = try #require(try await stream.nextEvent())
            #expect(snapshot.event == "snapshot")
            #expect(snapshot.id == id1)
            #expect(snapshot.dataLines == 1)
            #expect(snapshot.view == ViewHead(jobId: job, status: "queued", version: 1, prompt: "line one\nline two\r\u{2028}\u{2029}\u{85}end"))

            var ids: [String] = []
            let statuses = ["running", "running", "running", "completed"]
            for (index, status) in statuses.enumerated() {
                ids.append(try await context.jobs.write(job, user: "alice", from: index + 1, status: status))
            }
            for (index, status) in statuses.enumerated() {
                let event = try #require(try await stream.nextEvent())
                #expect(event.event == "job")
                #expect(event.id == ids[index])
                #expect(event.view?.version == index + 2)
                #expect(event.view?.status == status)
            }
            let done = try #require(try await stream.nextEvent())
            #expect(done.event == "done")
            #expect(done.data == #"{"jobId":"\#(job)","status":"completed"}"#)
            #expect(try await stream.next() == nil)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func doneWaitsForEveryTaskToSettle() async throws {
        try await withGateway(.noFal()) { context in
            let job = uniqueID()
            try await context.jobs.create(job, user: "quinn")
            let stream = try await context.open(context.jobs.jobPath(job, user: "quinn"))
            #expect(try await stream.nextEvent()?.event == "snapshot")
            // The video failed while a parallel audio task still runs: failed, but not done yet.
            try await context.jobs.write(job, user: "quinn", from: 1, status: "failed", extra: #","videoStatus":"failed","audioStatus":"running""#)
            try await context.jobs.write(job, user: "quinn", from: 2, status: "failed", extra: #","videoStatus":"failed","audioStatus":"completed""#)
            #expect(try await stream.nextEvent()?.view?.version == 2)
            #expect(try await stream.nextEvent()?.view?.version == 3)
            #expect(try await stream.nextEvent()?.event == "done")
            // Opening a finished job's stream: its snapshot, then done.
            let again = try await context.open(context.jobs.jobPath(job, user: "quinn"))
            #expect(try await again.nextEvent()?.event == "snapshot")
            #expect(try await again.nextEvent()?.event == "done")
            #expect(try await again.next() == nil)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func replayFromEveryLastEventIDHasNoGapAndNoDuplicate() async throws {
        try await withGateway(.noFal()) { context in
            let job = uniqueID()
            var ids = [try await context.jobs.create(job, user: "bob")]
            let statuses = ["running", "running", "running", "running", "failed"]
            for (index, status) in statuses.enumerated() {
                ids.append(try await context.jobs.write(job, user: "bob", from: index + 1, status: status))
            }
            for (position, lastID) in ids.enumerated() {
                // Header for even positions, query parameter for odd ones.
                let path = context.jobs.jobPath(job, user: "bob") + (position % 2 == 1 ? "&lastEventId=\(lastID)" : "")
                let stream = try await context.open(path, headers: position % 2 == 0 ? ["Last-Event-ID": lastID] : [:])
                var seen: [String] = []
                while let event = try await stream.nextEvent(), event.event != "done" {
                    #expect(event.event == "job", "from \(lastID): \(event)")
                    seen.append(event.id ?? "?")
                }
                #expect(seen == Array(ids[(position + 1)...]), "resumed after \(lastID)")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func replayMeetsLiveChangesWithoutGapOrDuplicate() async throws {
        try await withGateway(.noFal()) { context in
            let job = uniqueID()
            let first = try await context.jobs.create(job, user: "carol")
            try await context.jobs.write(job, user: "carol", from: 1, status: "running")
            try await context.jobs.write(job, user: "carol", from: 2, status: "running")
            let last = 60
            let writer = Task {
                for version in 3..<last {
                    try await context.jobs.write(job, user: "carol", from: version, status: version == last - 1 ? "completed" : "running")
                }
            }
            let stream = try await context.open(context.jobs.jobPath(job, user: "carol"), headers: ["Last-Event-ID": first])
            var versions: [Int] = []
            while let event = try await stream.nextEvent(), event.event != "done" {
                versions.append(event.view?.version ?? -1)
            }
            try await writer.value
            #expect(versions == Array(2...last))
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func trimmedUnknownOrMalformedIDsGetASnapshot() async throws {
        try await withGateway(.noFal({ $0.eventsMaxLength = 5 })) { context in
            let job = uniqueID()
            let first = try await context.jobs.create(job, user: "dan")
            // MAXLEN ~ trims whole stream nodes (100 entries each): go well past one.
            for version in 1..<250 {
                try await context.jobs.write(job, user: "dan", from: version, status: "running")
            }
            let length = try await context.jobs.repository.redis.send(RedisCommand("XLEN", JobKeys().events(job))).integer ?? 0
            #expect(length < 250)
            for lastID in [first, "1-0", "999999999999999-0", "not-an-id", "12", ""] {
                let stream = try await context.open(context.jobs.jobPath(job, user: "dan"), headers: ["Last-Event-ID": lastID])
                let event = try #require(try await stream.nextEvent())
                #expect(event.event == "snapshot", "Last-Event-ID \(lastID)")
                #expect(event.view?.version == 250)
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func tokensOpenOnlyWhatTheyAreFor() async throws {
        try await withGateway(.noFal()) { context in
            let mine = uniqueID()
            let other = uniqueID()
            try await context.jobs.create(mine, user: "erin")
            try await context.jobs.create(other, user: "frank")
            let signer = context.jobs.signer
            func status(_ path: String) async throws -> (Int, String?) {
                let stream = try await context.open(path)
                var body = ""
                if stream.status != 200 {
                    _ = try await stream.next()
                    body = stream.pendingText
                }
                return (stream.status, stream.status == 200 ? nil : body)
            }
            // A token for one job opens that job only.
            #expect(try await status(context.jobs.jobPath(mine, user: "erin")).0 == 200)
            let erinsToken = signer.token(scope: .job(mine), userID: "erin", now: Date())
            let (crossStatus, crossBody) = try await status("/v1/jobs/\(other)/events?token=\(erinsToken)")
            #expect(crossStatus == 403)
            #expect(crossBody?.contains("\"forbidden\"") == true)
            // A job token is not a user-stream token.
            #expect(try await status("/v1/events?token=\(erinsToken)").0 == 403)
            // Someone else's job: 404, as if it did not exist.
            let (notMine, notMineBody) = try await status(context.jobs.jobPath(other, user: "erin"))
            #expect(notMine == 404)
            #expect(notMineBody?.contains("\"not_found\"") == true)
            #expect(try await status(context.jobs.jobPath(uniqueID(), user: "erin")).0 == 404)
            // A user token opens that user's jobs and stream.
            let userToken = signer.token(scope: .user, userID: "erin", now: Date())
            #expect(try await status("/v1/jobs/\(mine)/events?token=\(userToken)").0 == 200)
            #expect(try await status("/v1/jobs/\(other)/events?token=\(userToken)").0 == 404)
            #expect(try await status("/v1/events?token=\(userToken)").0 == 200)
            // Expired, tampered, foreign-key and missing tokens.
            #expect(try await status(context.jobs.jobPath(mine, user: "erin", now: Date().addingTimeInterval(-7200))).0 == 401)
            var tampered = Array(erinsToken)
            tampered[3] = tampered[3] == "A" ? "B" : "A"
            #expect(try await status("/v1/jobs/\(mine)/events?token=\(String(tampered))").0 == 401)
            let foreign = EventTokenSigner(secret: "another-secret-0123456789").token(scope: .job(mine), userID: "erin", now: Date())
            #expect(try await status("/v1/jobs/\(mine)/events?token=\(foreign)").0 == 401)
            #expect(try await status("/v1/jobs/\(mine)/events").0 == 401)
            #expect(try await status("/v1/events").0 == 401)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func heartbeatCommentsArriveOnIdleStreams() async throws {
        try await withGateway(.noFal({ $0.sseHeartbeat = .seconds(1) })) { context in
            let job = uniqueID()
            try await context.jobs.create(job, user: "gina")
            let stream = try await context.open(context.jobs.jobPath(job, user: "gina"))
            #expect(try await stream.nextEvent()?.event == "snapshot")
            let start = ContinuousClock.now
            let beat = try #require(try await stream.next())
            #expect(beat.comment == "heartbeat")
            #expect(beat.event == nil && beat.data == nil)
            let second = try #require(try await stream.next())
            #expect(second.comment == "heartbeat")
            let elapsed = ContinuousClock.now - start
            // Two intervals and a bit (the hub's tick is a quarter interval); the upper bound leaves
            // room for a full suite on two cores (4.7 s seen there, then over 8 s once the browser and
            // Python-helper tests joined it), far below "never".
            #expect(elapsed > .milliseconds(1500) && elapsed < .seconds(20), "two heartbeats took \(elapsed)")
        }
    }

    /// The change a reconnecting client missed can be the newest one the hub has seen (the
    /// stream's floor): it must still be replayed.
    @Test(.timeLimit(.minutes(1)))
    func resumingTheUserStreamReplaysTheNewestChangeItMissed() async throws {
        try await withGateway(.noFal()) { context in
            let stream = try await context.open(context.jobs.userPath("kim"))
            _ = try await stream.next()
            let job = uniqueID()
            let first = try await context.jobs.create(job, user: "kim")
            #expect(try await stream.nextEvent()?.view?.version == 1)
            // The client is gone; meanwhile the job completes, the newest change on this instance.
            _ = try await context.jobs.write(job, user: "kim", from: 1, status: "completed")
            #expect(try await stream.nextEvent()?.view?.version == 2)

            let resumed = try await context.open(context.jobs.userPath("kim"), headers: ["Last-Event-ID": first])
            let marker = uniqueID()
            try await context.jobs.create(marker, user: "kim")
            var replayed: [String] = []
            while replayed.last != "\(marker)@1", let event = try await resumed.nextEvent() {
                replayed.append("\(event.view?.jobId ?? "?")@\(event.view?.version ?? 0)")
            }
            #expect(replayed.contains("\(job)@2"), "the missed completion was replayed")
            #expect(replayed.filter { $0 == "\(job)@2" }.count == 1)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func userStreamCarriesAllOfTheCallersJobsAndOnlyThose() async throws {
        try await withGateway(.noFal()) { context in
            let stream = try await context.open(context.jobs.userPath("hana"))
            #expect(stream.status == 200)
            let hello = try #require(try await stream.next())
            #expect(hello.retry == EventsController.retryMilliseconds)
            let a = uniqueID(), b = uniqueID(), foreign = uniqueID()
            try await context.jobs.create(a, user: "hana")
            try await context.jobs.create(foreign, user: "ivan")
            try await context.jobs.create(b, user: "hana")
            try await context.jobs.write(foreign, user: "ivan", from: 1, status: "running")
            let lastOfA = try await context.jobs.write(a, user: "hana", from: 1, status: "completed")
            var seen: [String] = []
            for _ in 0..<3 {
                let event = try #require(try await stream.nextEvent())
                #expect(event.event == "job")
                seen.append("\(event.view?.jobId ?? "?")@\(event.view?.version ?? 0)")
            }
            #expect(seen == ["\(a)@1", "\(b)@1", "\(a)@2"])

            // Resuming the user stream from an id replays later changes of the user's jobs.
            let resumed = try await context.open(context.jobs.userPath("hana"), headers: ["Last-Event-ID": lastOfA])
            try await context.jobs.write(b, user: "hana", from: 1, status: "running")
            var replayed: [String] = []
            while replayed.last != "\(b)@2", let event = try await resumed.nextEvent() {
                replayed.append("\(event.view?.jobId ?? "?")@\(event.view?.version ?? 0)")
            }
            #expect(replayed.last == "\(b)@2")
            #expect(!replayed.contains { $0.hasPrefix(foreign) })
        }
    }
}

@Suite("Events: latency")
struct EventsLatencyTests {
    /// Change written -> event read by a streaming client, one at a time, small and 64 KiB views:
    /// every change arrives, in order.
    @Test(.timeLimit(.minutes(1)))
    func changeToEventLatency() async throws {
        try await withGateway(.noFal({ $0.eventsMaxLength = 1000 })) { context in
            for size in [100, 64 * 1024] {
                let job = uniqueID()
                try await context.jobs.create(job, user: "pat")
                let stream = try await context.open(context.jobs.jobPath(job, user: "pat"))
                #expect(try await stream.nextEvent()?.event == "snapshot")
                let prompt = String(repeating: "p", count: size)
                var samples: [Duration] = []
                for version in 1...200 {
                    let start = ContinuousClock.now
                    try await context.jobs.write(job, user: "pat", from: version, status: "running", prompt: prompt)
                    let event = try #require(try await stream.nextEvent())
                    samples.append(ContinuousClock.now - start)
                    #expect(event.view?.version == version + 1)
                }
                samples.sort()
                let p50 = samples[samples.count / 2], p99 = samples[samples.count * 99 / 100]
                // Printed, not asserted: speed is ops/bench's business (a loaded machine is slow).
                print("change -> SSE event, view of \(size) bytes: p50 \(p50), p99 \(p99)")
            }
        }
    }
}
