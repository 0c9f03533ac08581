@testable import Clapper
import Foundation
import Logging
import Redis
import Testing
import TestSupport

@Suite("Job store on a real Redis")
struct JobStoreTests {
    /// The metrics backend first: a metric handle made before it (these suites build no gateway)
    /// would count into nothing for the rest of the process, and LatencyHistogramTests reads them.
    init() { _ = ClapperMetrics.registry }

    static func store(_ redis: RedisClient) -> JobStore {
        JobStore(repository: JobRepository(redis: redis, keys: JobKeys(), eventsMaxLength: 100), catalog: .default)
    }

    static func job(_ user: String = "u", audio: Bool = false) -> Job {
        Job(
            id: UUID().uuidString.lowercased(), userID: user, createdAt: Date(), prompt: "p", durationSeconds: 2,
            feature: JobFeature(audio: audio, audioTier: audio ? "fast" : nil), audioMode: .parallel,
            video: JobTask(kind: .video, model: ModelCatalog.default.video.id),
            audio: audio ? JobTask(kind: .audio, model: "cassetteai/sound-effects-generator") : nil
        )
    }

    /// Instance A caches a job; instance B moves it on (a retry under a new fal request); a
    /// webhook for the new request reaching A must apply, not be taken for a stale repeat.
    @Test func aStaleCachedStateNeverTurnsARealEventIntoARepeat() async throws {
        try await withRedis { redis, _ in
            let a = Self.store(redis), b = Self.store(redis)
            // With audio still pending the job is not settled, so A keeps it cached.
            let job = Self.job(audio: true)
            _ = try await a.create(job, idempotency: nil)
            let at = Date()
            for event: TaskEvent in [.submitStarted(attempt: "a1"), .accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), .failed(TaskError(code: "fal_error", message: "x"))] {
                let update = try await a.update(job.id) { job in (job.apply(.video, event, at: at), nil) }
                #expect(update.transition.outcome.isChanged)
            }
            #expect(a.cache.get(job.id)?.job.video.status == .failed)
            for event: TaskEvent in [.retry, .submitStarted(attempt: "a1"), .accepted(requestID: "r2", statusURL: nil, responseURL: nil, cancelURL: nil)] {
                _ = try await b.update(job.id) { job in (job.apply(.video, event, at: at), nil) }
            }
            // On A's (stale) cache the task still belongs to r1 and is failed: a webhook for r2 would
            // look foreign. It is decided again on what Redis holds, and applies.
            let webhook = try await a.update(job.id) { job in
                guard job.video.falRequestID == "r2" else { return (.ignored("webhook for another request"), nil) }
                return (job.apply(.video, .completed(mediaURL: "https://m/v.mp4"), at: at), nil)
            }
            #expect(webhook.transition.outcome.isChanged)
            #expect(webhook.job.video.status == .completed)
            let stored = try #require(try await b.load(job.id))
            #expect(stored.job.video.status == .completed)
            #expect(stored.job.version == webhook.job.version)
        }
    }

    /// A cached version that another instance moved past fails its compare-and-set and is re-read.
    @Test func aStaleCachedVersionLosesItsWriteAndIsReadAgain() async throws {
        try await withRedis { redis, _ in
            let a = Self.store(redis), b = Self.store(redis)
            let job = Self.job()
            _ = try await a.create(job, idempotency: nil)
            let at = Date()
            _ = try await b.update(job.id) { job in (job.apply(.video, .submitStarted(attempt: "a1"), at: at), nil) }
            // A still caches version 1; its write of the same event must not count twice.
            let again = try await a.update(job.id) { job in (job.apply(.video, .submitStarted(attempt: "a1"), at: at), nil) }
            #expect(!again.transition.outcome.isChanged)
            #expect(try await b.load(job.id)?.job.version == 2)
        }
    }

    /// A job in flight stays cached after each change (its next webhook skips the read); once every
    /// task has finished it leaves the cache.
    @Test func aJobLeavesTheCacheWhenItSettles() async throws {
        try await withRedis { redis, _ in
            let store = Self.store(redis)
            let job = Self.job()
            _ = try await store.create(job, idempotency: nil)
            #expect(store.cache.get(job.id)?.job.version == 1)
            let at = Date()
            _ = try await store.update(job.id) { job in (job.apply(.video, .accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: at), nil) }
            #expect(store.cache.get(job.id)?.job.video.falRequestID == "r1")
            let done = try await store.update(job.id) { job in (job.apply(.video, .completed(mediaURL: "https://m/v.mp4"), at: at), nil) }
            #expect(done.job.video.status == .completed)
            #expect(store.cache.get(job.id) == nil)
        }
    }

    /// Instance B never touched the job, yet learns each change of it in flight from the events
    /// channel (its doc rides with the change); its cached state is exactly what Redis holds
    /// (fal's output included), and B applies the job's next change with no read. Once the job
    /// settles, its change carries no doc and every instance lets it go.
    @Test(.timeLimit(.minutes(1))) func anInstanceLearnsJobsInFlightFromTheEventsChannelAndSkipsTheRead() async throws {
        try await withRedis { redis, _ in
            let a = Self.store(redis), b = Self.store(redis)
            let hubs = [a, b].map { EventHub(redis: redis, subscriberConfiguration: redis.configuration, keys: JobKeys(), cache: $0.cache, logger: Logger(label: "test")) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for hub in hubs { group.addTask { try await hub.run() } }
                defer { group.cancelAll() }
                try await eventually("both hubs subscribed") { hubs.allSatisfy(\.isSubscribed) }
                let job = Self.job(audio: true)
                _ = try await a.create(job, idempotency: nil)
                let at = Date()
                let output = Array(#"{"video":{"url":"https://m/v.mp4","content_type":"video/mp4"},"seed":12345678901234567890}"#.utf8)
                _ = try await a.update(job.id) { job in (job.apply(.video, .accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: at), nil) }
                _ = try await a.update(job.id) { job in (job.apply(.video, .completed(mediaURL: "https://m/v.mp4"), at: at), (.video, output)) }

                try await eventually("B caches version 3") { b.cache.get(job.id)?.job.version == 3 }
                let cached = try #require(b.cache.get(job.id))
                let stored = try #require(try await b.load(job.id))
                #expect(cached.job == stored.job)
                #expect(cached.outputs == stored.outputs)
                #expect(cached.outputs["video"] == output)

                let readsBefore = try await Self.calls("hmget", redis)
                let done = try await b.update(job.id) { job in (job.apply(.audio, .completed(mediaURL: "https://m/a.wav"), at: at), nil) }
                #expect(done.transition.outcome.isChanged)
                #expect(try await Self.calls("hmget", redis) == readsBefore)
                // The stored view still splices fal's video output byte for byte.
                let view = try #require(try await b.view(job.id)).view
                #expect(String(decoding: view, as: UTF8.self).contains(String(decoding: output, as: UTF8.self)))

                try await eventually("A lets the settled job go") { a.cache.get(job.id) == nil }
                #expect(b.cache.get(job.id) == nil)
            }
        }
    }

    /// A change this instance stores reaches its own streams from the store (`JobStore.onWritten`),
    /// without waiting for the events channel: here the hub's subscription listens on another Redis,
    /// where nothing is published, and a user's stream still gets the create and the update, with
    /// their stream ids. Without the hook it gets nothing and the test runs out of time.
    @Test(.timeLimit(.minutes(1))) func aChangeReachesThisInstancesStreamsWithoutTheEventsChannel() async throws {
        try await withRedis { redis, _ in
            try await withRedisServer { elsewhere in
                var store = Self.store(redis)
                let hub = EventHub(redis: redis, subscriberConfiguration: RedisConfiguration(url: elsewhere.url), keys: JobKeys(), cache: store.cache, logger: Logger(label: "test"))
                store.onWritten = { hub.deliverWritten($0) }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await hub.run() }
                    defer { group.cancelAll() }
                    try await eventually("subscribed") { hub.isSubscribed }
                    let job = Self.job("local-\(UUID())")
                    let subscription = hub.subscribe(jobID: nil, userID: job.userID, heartbeat: .seconds(60))
                    _ = try await store.create(job, idempotency: nil)
                    let update = try await store.update(job.id) { job in
                        (job.apply(.video, .accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: Date()), nil)
                    }
                    var got: [JobChange] = []
                    var batch: [JobChange] = []
                    while got.count < 2, await subscription.sink.next(&batch) == .changes { got += batch }
                    #expect(got.map(\.jobID) == [job.id, job.id])
                    #expect(got.last?.id.description == update.streamID)
                    #expect(got.last.map { String(decoding: Array($0.frame.readableBytesView), as: UTF8.self).contains(#""videoStatus":"queued""#) } == true)
                }
            }
        }
    }

    /// Redis went away (and may come back without writes the cache saw): the instance lets every
    /// cached job go when its subscription drops, and reads them again.
    @Test(.timeLimit(.minutes(1))) func aLostSubscriptionEmptiesTheCache() async throws {
        try await withRedis { redis, server in
            let store = Self.store(redis)
            let hub = EventHub(redis: redis, subscriberConfiguration: redis.configuration, keys: JobKeys(), cache: store.cache, logger: Logger(label: "test"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await hub.run() }
                defer { group.cancelAll() }
                try await eventually("subscribed") { hub.isSubscribed }
                let job = Self.job(audio: true)
                _ = try await store.create(job, idempotency: nil)
                #expect(store.cache.get(job.id) != nil)
                try await server.restart()
                try await eventually("the cache let the job go") { store.cache.count == 0 }
            }
        }
    }

    /// A change published with a doc that does not decode is dropped when used, never applied:
    /// the store reads Redis instead.
    @Test func aPublishedDocThatDoesNotDecodeIsReadAgain() async throws {
        try await withRedis { redis, _ in
            let store = Self.store(redis)
            let job = Self.job(audio: true)
            _ = try await store.create(job, idempotency: nil)
            store.cache.remove(job.id)
            store.cache.put(JobCache.Published(jobID: job.id, version: 1, doc: Array("{}".utf8)[...], view: Array("{}".utf8)[...]))
            #expect(store.cache.get(job.id) == nil)
            store.cache.put(JobCache.Published(jobID: job.id, version: 1, doc: Array("{}".utf8)[...], view: Array("{}".utf8)[...]))
            let update = try await store.update(job.id) { job in (job.apply(.video, .accepted(requestID: "r1", statusURL: nil, responseURL: nil, cancelURL: nil), at: Date()), nil) }
            #expect(update.job.version == 2)
            #expect(update.job.prompt == job.prompt)
        }
    }

    /// Calls of one command so far, from this test's own Redis (`INFO commandstats`).
    static func calls(_ command: String, _ redis: RedisClient) async throws -> Int {
        let info = try await redis.send(RedisCommand("INFO", "commandstats")).string ?? ""
        guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_\(command):") }),
              let calls = line.split(separator: "=").dropFirst().first?.split(separator: ",").first
        else { return 0 }
        return Int(calls) ?? 0
    }
}
