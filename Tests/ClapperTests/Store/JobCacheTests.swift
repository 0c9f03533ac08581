@testable import Clapper
import Foundation
import Testing

/// The per-instance job cache's bounds, without Redis (the store's use of it: JobStoreTests).
@Suite struct JobCacheTests {
    static func loaded(_ id: String, version: Int) -> JobStore.Loaded {
        var job = JobFixture.job(audio: false)
        job.id = id
        job.version = version
        return JobStore.Loaded(job: job, outputs: [:])
    }

    @Test func pastItsCapacityTheJobPutLongestAgoGoesFirst() {
        let cache = JobCache(capacity: 3)
        for id in ["a", "b", "c"] { cache.put(Self.loaded(id, version: 1)) }
        cache.put(Self.loaded("a", version: 2))  // a is now the newest put
        cache.put(Self.loaded("d", version: 1))
        #expect(cache.get("b") == nil)
        #expect(cache.get("a")?.job.version == 2)
        #expect(cache.get("c") != nil && cache.get("d") != nil)
        #expect(cache.count == 3)
    }

    @Test func anOlderVersionNeverReplacesANewerOne() {
        let cache = JobCache(capacity: 4)
        cache.put(Self.loaded("a", version: 5))
        cache.put(Self.loaded("a", version: 4))
        #expect(cache.get("a")?.job.version == 5)
        cache.remove("a")
        #expect(cache.get("a") == nil)
        cache.put(Self.loaded("a", version: 4))
        #expect(cache.get("a")?.job.version == 4)
    }

    /// One job put a thousand times leaves stale places in the eviction order; eviction skips
    /// them, and the job's last put still counts as its age.
    @Test func aJobPutAgainAndAgainAgesFromItsLastPut() {
        let cache = JobCache(capacity: 2)
        for version in 1...1000 { cache.put(Self.loaded("a", version: version)) }
        cache.put(Self.loaded("b", version: 1))
        #expect(cache.get("a")?.job.version == 1000)
        cache.put(Self.loaded("c", version: 1))
        #expect(cache.get("a") == nil)
        #expect(cache.get("b") != nil && cache.get("c") != nil)
        for version in 2...1000 { cache.put(Self.loaded("c", version: version)) }
        cache.put(Self.loaded("d", version: 1))
        #expect(cache.get("b") == nil)
        #expect(cache.get("c")?.job.version == 1000)
        #expect(cache.count == 2)
    }

    /// A published change: decoded on use (version from the message, outputs from the view); it
    /// never replaces the same version this instance decoded itself, and a change without a doc
    /// (the job settled) drops only what is not newer.
    @Test func aPublishedChangeIsDecodedOnUseAndNeverOverridesWhatIsNewer() throws {
        let cache = JobCache(capacity: 4)
        var job = JobFixture.job(audio: true)
        job.version = 3
        let doc = try JobDocument.encode(job)
        let output = Array(#"{"video":{"url":"https://m/v.mp4"}}"#.utf8)
        let view = JobView.encode(job, videoOutput: output, audioOutput: nil)
        cache.put(JobCache.Published(jobID: job.id, version: 3, doc: doc[...], view: view[...]))
        let loaded = try #require(cache.get(job.id))
        #expect(loaded.job == job)
        #expect(loaded.outputs == ["video": output])
        #expect(JobView.encode(loaded.job, videoOutput: loaded.outputs["video"], audioOutput: loaded.outputs["audio"]) == view)

        cache.put(Self.loaded(job.id, version: 4))
        cache.put(JobCache.Published(jobID: job.id, version: 4, doc: doc[...], view: view[...]))
        #expect(cache.get(job.id)?.outputs == [:])  // still the decoded version 4
        cache.remove(job.id, upTo: 3)
        #expect(cache.get(job.id)?.job.version == 4)
        cache.remove(job.id, upTo: 4)
        #expect(cache.get(job.id) == nil)
        // A doc of another job (a damaged message) is never taken for this one.
        cache.put(JobCache.Published(jobID: "other", version: 1, doc: doc[...], view: view[...]))
        #expect(cache.get("other") == nil)
    }

    /// A published change too large to keep (fal's outputs in its view) lets the job go instead of
    /// keeping an older version; `removeAll` empties the cache.
    @Test func aPublishedChangeTooLargeIsNotKeptAndRemoveAllEmptiesTheCache() {
        let cache = JobCache(capacity: 4)
        cache.put(Self.loaded("a", version: 1))
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: JobCache.maxPublishedBytes)
        cache.put(JobCache.Published(jobID: "a", version: 2, doc: Array("{}".utf8)[...], view: big[...]))
        #expect(cache.get("a") == nil)
        cache.put(Self.loaded("a", version: 3))
        cache.put(Self.loaded("b", version: 1))
        cache.removeAll()
        #expect(cache.count == 0)
        cache.put(Self.loaded("c", version: 1))
        #expect(cache.get("c") != nil)
    }
}
