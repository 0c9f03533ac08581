@testable import Clapper
import Foundation
import Redis
import Testing
import TestSupport

@Suite("The reconciler's due set")
struct DueSetTests {
    @Test func aClaimIsTakenOnceAndItsReleaseNeverOverwritesANewerSchedule() async throws {
        try await withRedis { redis, _ in
            let keys = JobKeys(prefix: "test-\(UUID().uuidString.prefix(8))")
            let queue = DueSet(redis: redis, keys: keys)
            let now = Date()
            let a = DueSet.Member(jobID: "a", kind: .video).encoded, b = DueSet.Member(jobID: "b", kind: .audio).encoded
            try await redis.send("ZADD", keys.due(shard: 0), now.addingTimeInterval(-1).milliseconds, a)
            try await redis.send("ZADD", keys.due(shard: 0), now.addingTimeInterval(-1).milliseconds, b)

            let first = try await queue.claim(now: now, lease: 60, limit: 10)
            #expect(Set(first.map(\.member.encoded)) == [a, b])
            // A second instance in the same round finds nothing due.
            #expect(try await queue.claim(now: now, lease: 60, limit: 10).isEmpty)

            // Meanwhile the store moved `a` (its task changed): the stale release leaves it alone.
            let moved = now.addingTimeInterval(5).milliseconds
            try await redis.send("ZADD", keys.due(shard: 0), moved, a)
            let claimedA = try #require(first.first { $0.member.encoded == a })
            try await queue.release(claimedA, next: nil)
            #expect(try await redis.send("ZSCORE", keys.due(shard: 0), a).integer == moved)

            // `b` is still under this claim: the release reschedules it.
            let claimedB = try #require(first.first { $0.member.encoded == b })
            let next = now.addingTimeInterval(30)
            try await queue.release(claimedB, next: next)
            #expect(try await redis.send("ZSCORE", keys.due(shard: 0), b).integer == next.milliseconds)
            try await queue.release(Entry(claimedB, score: next.milliseconds), next: nil)
            #expect(try await redis.send("ZSCORE", keys.due(shard: 0), b) == .null)
        }
    }

    /// On a cluster each shard has its own due set: a shard with a backlog larger than a claim
    /// must not starve the others (the sharded layout runs on one Redis too: same slot rules).
    @Test func aShardWithABacklogDoesNotStarveTheOthers() async throws {
        try await withRedis { redis, _ in
            let keys = JobKeys(prefix: "test-\(UUID().uuidString.prefix(8))", shards: 16)
            let queue = DueSet(redis: redis, keys: keys)
            let now = Date()
            var backlog: [String] = []
            var n = 0
            while backlog.count < 100 {
                if keys.shard(ofJob: "busy-\(n)") == 0 { backlog.append("busy-\(n)") }
                n += 1
            }
            for id in backlog {
                try await redis.send("ZADD", keys.due(shard: 0), now.addingTimeInterval(-1).milliseconds, DueSet.Member(jobID: id, kind: .video).encoded)
            }
            var lonely = "lonely-0"
            while keys.shard(ofJob: lonely) != 5 { lonely += "x" }
            try await redis.send("ZADD", keys.due(shard: 5), now.addingTimeInterval(-1).milliseconds, DueSet.Member(jobID: lonely, kind: .video).encoded)
            // 30 claims of 3 while shard 0 still holds due work: the lonely task is claimed too
            // (from a random first shard, 5 starts in 16 reach it before shard 0).
            var claimed = false
            for _ in 0..<30 where !claimed {
                claimed = try await queue.claim(now: now, lease: 60, limit: 3).contains { $0.jobID == lonely }
            }
            #expect(claimed)
        }
    }

    private func Entry(_ entry: DueSet.Entry, score: Int64) -> DueSet.Entry {
        DueSet.Entry(member: entry.member.encoded, score: score)!
    }

    @Test func membersRoundTripAndJunkIsRefused() {
        let member = DueSet.Member(jobID: "a|b", kind: .audio)
        #expect(DueSet.Member(encoded: member.encoded) == member)
        #expect(DueSet.Member(encoded: "no-bar") == nil)
        #expect(DueSet.Member(encoded: "job|music") == nil)
    }
}
