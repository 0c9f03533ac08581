@testable import Clapper
import Foundation
import Redis
import Testing
import TestSupport

@Suite("The reconciler's due set")
struct DueQueueTests {
    @Test func aClaimIsTakenOnceAndItsReleaseNeverOverwritesANewerSchedule() async throws {
        try await withRedis { redis, _ in
            let keys = JobKeys(prefix: "test-\(UUID().uuidString.prefix(8))")
            let queue = DueQueue(redis: redis, keys: keys)
            let now = Date()
            let a = JobStore.member(jobID: "a", kind: .video), b = JobStore.member(jobID: "b", kind: .audio)
            try await redis.send("ZADD", keys.due, now.addingTimeInterval(-1).milliseconds, a)
            try await redis.send("ZADD", keys.due, now.addingTimeInterval(-1).milliseconds, b)

            let first = try await queue.claim(now: now, lease: 60, limit: 10)
            #expect(Set(first.map(\.member)) == [a, b])
            // A second instance in the same round finds nothing due.
            #expect(try await queue.claim(now: now, lease: 60, limit: 10).isEmpty)

            // Meanwhile the store moved `a` (its task changed): the stale release leaves it alone.
            let moved = now.addingTimeInterval(5).milliseconds
            try await redis.send("ZADD", keys.due, moved, a)
            let claimedA = try #require(first.first { $0.member == a })
            try await queue.release(claimedA, next: nil)
            #expect(try await redis.send("ZSCORE", keys.due, a).integer == moved)

            // `b` is still under this claim: the release reschedules it.
            let claimedB = try #require(first.first { $0.member == b })
            let next = now.addingTimeInterval(30)
            try await queue.release(claimedB, next: next)
            #expect(try await redis.send("ZSCORE", keys.due, b).integer == next.milliseconds)
            try await queue.release(Entry(claimedB, score: next.milliseconds), next: nil)
            #expect(try await redis.send("ZSCORE", keys.due, b) == .null)
        }
    }

    private func Entry(_ entry: DueQueue.Entry, score: Int64) -> DueQueue.Entry {
        DueQueue.Entry(member: entry.member, score: score)!
    }
}
