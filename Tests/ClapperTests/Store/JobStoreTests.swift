@testable import Clapper
import Foundation
import Redis
import Testing
import TestSupport

@Suite("Job store on a real Redis")
struct JobStoreTests {
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
}
