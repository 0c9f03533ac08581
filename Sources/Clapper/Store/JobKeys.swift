import Foundation
import Redis

/// Where a job lives in Redis.
///
/// One Redis (`shards == 0`): a job's own keys share the hash tag `{jobId}`; the indexes (due
/// set, request index, events channel) are one key each.
///
/// Redis Cluster (`shards > 0`): every key a job's script touches must live in one slot, so the
/// keyspace is cut into `shards` shards, each a hash tag (`{c<shard>.<n>}`) whose slot sits in its own
/// 1/`shards` of the slot range (the tags spread over the masters as the slots do). A job lives in
/// the shard of its id; its owner's job list and Idempotency-Keys live in the shard of the user
/// id, and job ids are drawn so the two are the same shard (`newJobID(for:)`). Each shard has its
/// own due set, request index and events channel (a shard channel): one job's change is one
/// script on one master, as on a single Redis.
struct JobKeys: Sendable {
    let prefix: String
    let shards: Int
    /// The hash tag of each shard (`{…}` included); empty for one Redis.
    private let tags: [String]

    init(prefix: String = "clapper", shards: Int = 0) {
        self.prefix = prefix
        self.shards = max(0, shards)
        self.tags = (0..<self.shards).map { Self.tag(shard: $0, of: max(1, shards)) }
    }

    /// Redis Cluster's layout: 16 shards (3 masters get 5 or 6 each; 16 subscriptions an instance).
    static func cluster(prefix: String = "clapper") -> JobKeys { JobKeys(prefix: prefix, shards: 16) }

    var isSharded: Bool { shards > 0 }

    /// Every shard's number (one, 0, for one Redis): what the reconciler and subscribers walk.
    var allShards: Range<Int> { 0..<max(1, shards) }

    func shard(ofJob id: String) -> Int { isSharded ? RedisClusterSlot.of(id) % shards : 0 }
    func shard(ofUser id: String) -> Int { isSharded ? RedisClusterSlot.of("user:" + id) % shards : 0 }

    /// A fresh job id for `userID`: random, and in the user's shard.
    func newJobID(for userID: String) -> String {
        let userShard = shard(ofUser: userID)
        while true {
            let id = UUID().uuidString.lowercased()
            if shard(ofJob: id) == userShard { return id }
        }
    }

    /// Hash: `version`, `user`, `doc` (internal JSON), `view` (the public JSON), `output:<task>` (fal's raw bytes).
    func job(_ id: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofJob: id)]):job:\(id)" : "\(prefix):{\(id)}:job"
    }
    /// Stream of changes, field `job` = the public JSON after the change; capped.
    func events(_ id: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofJob: id)]):events:\(id)" : "\(prefix):{\(id)}:events"
    }
    /// Channel every change of the shard's jobs is published on: `{"jobId","userId","id","job"}`.
    func channel(shard: Int) -> String { isSharded ? "\(prefix):\(tags[shard]):events" : "\(prefix):events" }
    /// Sorted set of unfinished tasks (`jobId|task`) by next-check time in ms.
    func due(shard: Int) -> String { isSharded ? "\(prefix):\(tags[shard]):due" : "\(prefix):due" }
    /// Media custody: completed tasks whose media is owed a copy into the bucket (`jobId|task`,
    /// scored by the next try in ms), written by the job script like the due set.
    /// Outbound events: each job change the endpoints may want (`OutboundService` reads it).
    func outbox(shard: Int) -> String { isSharded ? "\(prefix):\(tags[shard]):outbox" : "\(prefix):outbox" }
    func store(shard: Int) -> String { isSharded ? "\(prefix):\(tags[shard]):store" : "\(prefix):store" }
    /// Hash: fal request id -> `jobId|task`.
    func requests(shard: Int) -> String { isSharded ? "\(prefix):\(tags[shard]):requests" : "\(prefix):requests" }
    /// Sorted set of a user's jobs by creation time in ms.
    func userJobs(_ userID: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofUser: userID)]):user:\(userID):jobs" : "\(prefix):user:{\(userID)}:jobs"
    }
    /// String: `jobId bodyHash` for an Idempotency-Key (the key's SHA-256), kept 24 h.
    func idempotency(userID: String, keyHash: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofUser: userID)]):idem:\(userID):\(keyHash)" : "\(prefix):idem:{\(userID)}:\(keyHash)"
    }

    /// Set of the user's jobs in flight (created, not every task finished), for `maxInFlight`.
    func userActive(_ userID: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofUser: userID)]):user:\(userID):active" : "\(prefix):user:{\(userID)}:active"
    }
    /// Hash `tokens`, `at`: the user's jobs-per-minute bucket.
    func userRate(_ userID: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofUser: userID)]):user:\(userID):rate" : "\(prefix):user:{\(userID)}:rate"
    }
    /// Hash of the user's limit overrides (`UserLimits`; fields absent: the defaults).
    func userLimits(_ userID: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofUser: userID)]):user:\(userID):limits" : "\(prefix):user:{\(userID)}:limits"
    }

    /// Hash: model -> estimated spend in millionths of a dollar, for one user and UTC day.
    func spend(userID: String, day: String) -> String {
        isSharded ? "\(prefix):\(tags[shard(ofUser: userID)]):spend:\(userID):\(day)" : "\(prefix):spend:{\(userID)}:\(day)"
    }

    /// The first tag `{c<shard>.<n>}` whose slot lies in the shard's part of the slot range.
    private static func tag(shard: Int, of shards: Int) -> String {
        let low = shard * RedisClusterSlot.count / shards
        let high = (shard + 1) * RedisClusterSlot.count / shards
        var n = 0
        while true {
            let tag = "c\(shard).\(n)"
            if (low..<high).contains(RedisClusterSlot.of(tag)) { return "{\(tag)}" }
            n += 1
        }
    }
}
