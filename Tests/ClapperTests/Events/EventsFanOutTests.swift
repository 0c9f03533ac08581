import AsyncHTTPClient
@testable import Clapper
import Foundation
import Redis
import Testing
import TestSupport

@Suite("Events: fan-out, slow consumers, shutdown, resources")
struct EventsFanOutTests {
    @Test(.timeLimit(.minutes(1)))
    func aChangeReachesSubscribersOfAnotherInstance() async throws {
        try await withGateway(GatewayOptions(fal: .none, gateways: 2)) { stack in
            let http = stack.http, jobs = stack.jobs
            let job = uniqueID()
            try await jobs.create(job, user: "kim")
            let onA = try await SSEReader(client: http, port: stack.gateways[0].port, path: jobs.jobPath(job, user: "kim"))
            let onB = try await SSEReader(client: http, port: stack.gateways[1].port, path: jobs.jobPath(job, user: "kim"))
            #expect(try await onA.nextEvent()?.event == "snapshot")
            #expect(try await onB.nextEvent()?.event == "snapshot")
            let id = try await jobs.write(job, user: "kim", from: 1, status: "running")
            for stream in [onA, onB] {
                let event = try #require(try await stream.nextEvent())
                #expect(event.id == id)
                #expect(event.view?.version == 2)
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aSlowConsumerIsDroppedWhileOthersKeepUpAndLosesNothingOnReconnect() async throws {
        try await withGateway(.noFal({ $0.eventsMaxLength = 5000 })) { context in
            let job = uniqueID()
            let hub = context.hub
            try await context.jobs.create(job, user: "lena")
            let big = String(repeating: "x", count: 64 * 1024)

            // The slow one reads its snapshot, then nothing until it has been dropped.
            let slow = try await context.open(context.jobs.jobPath(job, user: "lena"))
            #expect(try await slow.nextEvent()?.event == "snapshot")

            let (fastVersions, fastVersionsContinuation) = AsyncStream.makeStream(of: Int.self)
            let fast = Task {
                let stream = try await context.open(context.jobs.jobPath(job, user: "lena"))
                var seen: [Int] = []
                while let event = try await stream.nextEvent(), event.event != "done" {
                    seen.append(event.view?.version ?? -1)
                    fastVersionsContinuation.yield(event.view?.version ?? -1)
                }
                fastVersionsContinuation.finish()
                return seen
            }
            var versions = fastVersions.makeAsyncIterator()
            #expect(await versions.next() == 1)
            try await eventually("two subscribers") { hub.subscriberCount == 2 }

            // Changes until the hub drops the slow stream; each waits for the fast one to have it.
            var version = 1
            while hub.subscriberCount == 2, version < 3000 {
                try await context.jobs.write(job, user: "lena", from: version, status: "running", prompt: big)
                version += 1
                #expect(await versions.next() == version)
            }
            #expect(hub.subscriberCount == 1, "the slow stream was never dropped")
            print("slow consumer: dropped after \(version - 1) changes of 64 KiB")
            try await context.jobs.write(job, user: "lena", from: version, status: "completed")
            version += 1
            let fastSeen = try await fast.value
            #expect(fastSeen == Array(1...version))

            // The slow one gets what was in flight, then its stream ends; it resumes from there.
            var slowSeen: [Int] = []
            var lastID: String?
            while let event = try await slow.nextEvent() {
                slowSeen.append(event.view?.version ?? -1)
                lastID = event.id
            }
            #expect(slowSeen.count < version - 1)
            #expect(slowSeen == Array((2...).prefix(slowSeen.count)))
            let resumed = try await context.open(context.jobs.jobPath(job, user: "lena"), headers: lastID.map { ["Last-Event-ID": $0] } ?? [:])
            while let event = try await resumed.nextEvent(), event.event != "done" {
                slowSeen.append(event.view?.version ?? -1)
            }
            #expect(slowSeen == Array(2...version), "the slow client lost or repeated changes")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func gracefulShutdownEndsStreamsWithARetryHint() async throws {
        try await withRedisServer { server in
            let configuration = testConfiguration(redis: server)
            let redis = RedisClient(configuration: configuration.redis)
            let jobs = TestJobs(redis: redis, configuration: configuration)
            let job = uniqueID()
            try await jobs.create(job, user: "mia")
            let elapsed = try await withGateway(GatewayOptions(redis: .given(server), fal: .none)) { stack in
                let gateway = stack.gateway, group = try #require(stack.gateway.group)
                let http = makeHTTPClient()
                let stream = try await SSEReader(client: http, port: gateway.port, path: jobs.jobPath(job, user: "mia"))
                let user = try await SSEReader(client: http, port: gateway.port, path: jobs.userPath("mia"))
                #expect(try await stream.nextEvent()?.event == "snapshot")
                #expect(try await user.next()?.retry == EventsController.retryMilliseconds)
                let start = ContinuousClock.now
                await group.triggerGracefulShutdown()
                for reader in [stream, user] {
                    var last: SSEFrame?
                    while let frame = try await reader.next() { last = frame }
                    #expect(last?.retry == EventsController.endRetryMilliseconds)
                    #expect(last?.comment?.contains("shutting down") == true)
                }
                try await http.shutdown()
                return ContinuousClock.now - start
            }
            // Far below a hang (a stream that ignored shutdown would never end), far above noise.
            #expect(elapsed < .seconds(10), "streams took \(elapsed) to end")
            await redis.shutdown()
        }
    }

    /// 6 s alone; past its old 60 s limit in 3 of 8 full runs today, beside the browser and
    /// Python-helper tests that now run alongside it (a resource test, not a timed one).
    @Test(.timeLimit(.minutes(3)))
    func aThousandStreamsOpenedAndClosedLeaveNothingBehind() async throws {
        try await withGateway(.noFal({ $0.sseMaxStreamsPerUser = 0 })) { context in
            let job = uniqueID()
            let hub = context.hub
            try await context.jobs.create(job, user: "nora")
            // The process's open files that are this gateway's sockets (other tests run alongside):
            // its listener and the test client's connection. Warm up lazily made resources first.
            let files = openSocketCount(port: context.port)
            do {
                let warmUp = try await context.open(context.jobs.jobPath(job, user: "nora"))
                #expect(try await warmUp.nextEvent()?.event == "snapshot")
            }
            try await eventually("the warm-up stream to go") { hub.subscriberCount == 0 }
            try await eventually("the warm-up connection to close") { openSocketCount(port: context.port) == files }
            let processFiles = openFileCount()
            var streams: [SSEReader] = []
            for _ in 0..<1000 {
                let stream = try await context.open(context.jobs.jobPath(job, user: "nora"))
                #expect(stream.status == 200)
                streams.append(stream)
            }
            #expect(hub.subscriberCount == 1000)
            #expect(openSocketCount(port: context.port) == files + 2000)
            // They all get a change.
            try await context.jobs.write(job, user: "nora", from: 1, status: "running")
            for stream in streams.prefix(50) {
                #expect(try await stream.nextEvent()?.event == "snapshot")
                #expect(try await stream.nextEvent()?.view?.version == 2)
            }
            streams.removeAll()
            try await eventually("every subscription to end") { hub.subscriberCount == 0 }
            try await eventually("every socket to close") { openSocketCount(port: context.port) <= files }
            #expect(openSocketCount(port: context.port) == files)
            print("1,000 streams: gateway sockets \(files) before and after; process open files \(processFiles) before, \(openFileCount()) after (other tests run alongside)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func changesMadeWhileTheSubscriptionIsDownAreCaughtUp() async throws {
        try await withGateway(.noFal()) { context in
            let job = uniqueID()
            let hub = context.hub
            try await context.jobs.create(job, user: "otto")
            let stream = try await context.open(context.jobs.jobPath(job, user: "otto"))
            #expect(try await stream.nextEvent()?.event == "snapshot")
            let user = try await context.open(context.jobs.userPath("otto"))
            #expect(try await user.next()?.retry != nil)
            try await eventually("two subscribers") { hub.subscriberCount == 2 }
            let catchUps = hub.catchUpCount
            // Cut the hub's subscription and change the job while it reconnects (50 ms backoff).
            let admin = context.jobs.repository.redis
            let killed = try await admin.send(RedisCommand("CLIENT", "KILL", "TYPE", "pubsub")).integer
            #expect(killed == 1)
            for version in 1...5 {
                try await context.jobs.write(job, user: "otto", from: version, status: version == 5 ? "completed" : "running")
            }
            try await eventually("the catch-up") { hub.catchUpCount > catchUps }
            var versions: [Int] = []
            while let event = try await stream.nextEvent(), event.event != "done" {
                versions.append(event.view?.version ?? -1)
            }
            #expect(versions == [2, 3, 4, 5, 6])
            var userVersions: [Int] = []
            while userVersions.last != 6, let event = try await user.nextEvent() {
                userVersions.append(event.view?.version ?? -1)
            }
            #expect(userVersions == [2, 3, 4, 5, 6])
        }
    }
}
