import Foundation
import Redis

/// The due set (`clapper:due`; on a cluster one per shard, see `JobKeys`): every unfinished task,
/// as `jobId|task`, scored by the time of its next check in ms. The job script writes it with each change (`JobStore`); the reconciler
/// claims, reschedules and lists through this type. The member format lives only here.
struct DueSet: Sendable {
    let redis: RedisClient
    let keys: JobKeys
    /// Which set of `JobKeys` this is: the reconciler's due set, or media custody's store set.
    var set: Which = .due

    enum Which: Sendable { case due, store }

    private func setKey(shard: Int) -> String {
        switch set {
        case .due: keys.due(shard: shard)
        case .store: keys.store(shard: shard)
        }
    }

    /// One task, as the due set and the request index name it: `jobId|task`.
    struct Member: Sendable, Hashable {
        var jobID: String
        var kind: TaskKind

        var encoded: String { "\(jobID)|\(kind.rawValue)" }

        init(jobID: String, kind: TaskKind) {
            self.jobID = jobID
            self.kind = kind
        }

        init?(encoded: String) {
            guard let bar = encoded.lastIndex(of: "|"), let kind = TaskKind(rawValue: String(encoded[encoded.index(after: bar)...])) else { return nil }
            self.init(jobID: String(encoded[..<bar]), kind: kind)
        }
    }

    /// One due task.
    struct Entry: Sendable, Hashable {
        var member: Member
        /// The next check, in ms since 1970.
        var score: Int64

        var jobID: String { member.jobID }
        var kind: TaskKind { member.kind }
        var nextCheck: Date { Date(timeIntervalSince1970: Double(score) / 1000) }

        init?(member: String, score: Int64) {
            guard let member = Member(encoded: member) else { return nil }
            self.member = member
            self.score = score
        }
    }

    /// Takes up to `limit` members due at `now` and pushes their scores to `leaseUntil`, in one
    /// atomic step: another instance claiming in the same round never sees them. A claim that is
    /// never released (a crash) simply comes due again when the lease ends.
    /// KEYS: 1 due zset. ARGV: 1 now ms, 2 lease-until ms, 3 limit. Returns the members.
    static let claimScript = RedisScript(#"""
    local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
    for _, member in ipairs(members) do
      redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
    end
    return members
    """#)

    func claim(now: Date, lease: TimeInterval, limit: Int) async throws -> [Entry] {
        let leaseUntil = now.addingTimeInterval(lease).milliseconds
        var entries: [Entry] = []
        // From a random shard on: a shard with a backlog of `limit` due tasks must not starve
        // the shards after it.
        let shards = keys.allShards
        let first = Int.random(in: shards)
        for offset in shards where entries.count < limit {
            let shard = (first + offset) % shards.count
            let reply = try await redis.eval(Self.claimScript, keys: [setKey(shard: shard)], arguments: [now.milliseconds, leaseUntil, limit - entries.count])
            entries += (reply.array ?? []).compactMap { $0.string.flatMap { Entry(member: $0, score: leaseUntil) } }
        }
        return entries
    }

    private func key(of member: Member) -> String { setKey(shard: keys.shard(ofJob: member.jobID)) }

    /// Ends a claim: sets the task's next check (or drops it with `next == nil`) only while its
    /// score is still the lease this claim set. Anything that moved it since — the task changed
    /// and the store rescheduled it, an admin retry, another claim after the lease — wins.
    /// KEYS: 1 due zset. ARGV: 1 member, 2 lease score, 3 next ms or "".
    static let releaseScript = RedisScript(#"""
    local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
    if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
    if ARGV[3] == '' then
      redis.call('ZREM', KEYS[1], ARGV[1])
    else
      redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
    end
    return 1
    """#)

    func release(_ entry: Entry, next: Date?) async throws {
        _ = try await redis.eval(Self.releaseScript, keys: [key(of: entry.member)], arguments: [entry.member.encoded, entry.score, next.map { String($0.milliseconds) } ?? ""])
    }

    /// Up to `limit` entries, soonest next check first (over every shard).
    func entries(limit: Int) async throws -> [Entry] {
        let replies = try await redis.pipeline(keys.allShards.map { RedisCommand("ZRANGE", setKey(shard: $0), 0, max(0, limit - 1), "WITHSCORES") })
        var entries: [Entry] = []
        for reply in replies {
            if case .error(let message) = reply { throw RedisError(.server, message) }
            entries += Self.entries(reply.array ?? [])
        }
        guard keys.isSharded else { return entries }
        return Array(entries.sorted { $0.score < $1.score }.prefix(limit))
    }

    private static func entries(_ flat: [RedisValue]) -> [Entry] {
        var entries: [Entry] = []
        var index = 0
        while index + 1 < flat.count {
            // A score beyond Int64 ms (`inf`, 1e300: not Clapper's write) is skipped, not trapped on.
            if let member = flat[index].string, let score = flat[index + 1].string.flatMap(Double.init).flatMap({ Int64(exactly: $0.rounded(.towardZero)) }),
               let entry = Entry(member: member, score: score) {
                entries.append(entry)
            }
            index += 2
        }
        return entries
    }

    /// Next check of one task, nil when it is not on the set.
    func nextCheck(of member: Member) async throws -> Date? {
        let reply = try await redis.send(RedisCommand("ZSCORE", key(of: member), member.encoded))
        return reply.string.flatMap(Double.init).map { Date(timeIntervalSince1970: $0 / 1000) }
    }

    /// Job ids the reconciler or an admin recently acted on (newest first), for the admin listing.
    var recentKey: String { "\(keys.prefix):reconcile:recent" }

    func noteRecent(_ jobID: String) async {
        _ = try? await redis.pipeline([
            RedisCommand("LREM", recentKey, 0, jobID),
            RedisCommand("LPUSH", recentKey, jobID),
            RedisCommand("LTRIM", recentKey, 0, 999),
        ])
    }

    func recent(limit: Int) async throws -> [String] {
        let reply = try await redis.send(RedisCommand("LRANGE", recentKey, 0, max(0, limit - 1)))
        return (reply.array ?? []).compactMap(\.string)
    }
}

