@testable import Clapper
import Redis
import Testing

@Suite("Job keys: one Redis and Redis Cluster layouts (no I/O)")
struct JobKeysTests {
    @Test func oneRedisKeepsItsLayout() {
        let keys = JobKeys()
        #expect(keys.job("j1") == "clapper:{j1}:job")
        #expect(keys.events("j1") == "clapper:{j1}:events")
        #expect(keys.due(shard: 0) == "clapper:due")
        #expect(keys.requests(shard: 0) == "clapper:requests")
        #expect(keys.channel(shard: 0) == "clapper:events")
        #expect(keys.userJobs("u") == "clapper:user:{u}:jobs")
        #expect(keys.idempotency(userID: "u", keyHash: "h") == "clapper:idem:{u}:h")
        #expect(keys.allShards == 0..<1)
        #expect(keys.shard(ofJob: "anything") == 0)
    }

    @Test func clusterShardsSitInTheirOwnPartOfTheSlotRange() {
        let keys = JobKeys.cluster()
        #expect(keys.allShards == 0..<16)
        for shard in keys.allShards {
            let slot = RedisClusterSlot.of(keys.due(shard: shard))
            #expect((shard * 1024..<(shard + 1) * 1024).contains(slot), "shard \(shard) at slot \(slot)")
            #expect(RedisClusterSlot.of(keys.requests(shard: shard)) == slot)
            #expect(RedisClusterSlot.of(keys.channel(shard: shard)) == slot)
        }
    }

    /// Every key the job script gets for a job lies in one slot: the script runs on a cluster.
    @Test(arguments: ["alice", "bob", "user-with-{braces}", "", "ü"])
    func aJobsScriptTouchesOneSlot(user: String) {
        let keys = JobKeys.cluster()
        for _ in 0..<50 {
            let id = keys.newJobID(for: user)
            let shard = keys.shard(ofJob: id)
            #expect(shard == keys.shard(ofUser: user))
            let slots = Set([
                keys.job(id), keys.events(id), keys.due(shard: shard), keys.requests(shard: shard),
                keys.userJobs(user), keys.idempotency(userID: user, keyHash: "abc"), keys.channel(shard: shard),
            ].map(RedisClusterSlot.of))
            #expect(slots.count == 1)
        }
    }

    @Test func usersSpreadOverTheShards() {
        let keys = JobKeys.cluster()
        let shards = Set((0..<200).map { keys.shard(ofUser: "user-\($0)") })
        #expect(shards.count == 16)
    }
}
