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
}
