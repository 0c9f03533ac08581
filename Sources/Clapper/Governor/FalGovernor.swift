import Foundation
import Redis

/// How many of Clapper's tasks may be at fal at once, across every instance
/// (`CLAPPER_FAL_CONCURRENCY`), and the fair line the others wait in. All state is in Redis
/// under one hash tag (`{gov}`), so every step is one Lua script on one node:
///
/// - `slots`: sorted set of the tasks holding a slot (`jobId|task`), scored by their lease's end
///   in ms. A slot is released when its task ends (any instance, `release`); a lease that runs out
///   (the holder died before submitting, or every release was lost) frees it too, and
///   `FalGovernorService` sweeps slots whose task has ended.
/// - the line: one list per user and priority (`wait:<priority>:<user>`), and per priority a ring
///   of the users who have tasks waiting. A free slot goes to the head of the next user's list in
///   the ring (round robin across users, first come first served within a user), every `normal`
///   task before any `low` one.
/// - `queued`: hash of the waiting tasks (`jobId|task` -> `priority|user`), so a task waits once.
struct FalGovernor: Sendable {
    let redis: RedisClient
    let prefix: String
    /// Tasks at fal at once, at most.
    let limit: Int
    /// How long a slot granted for a submit holds before it returns by itself.
    let submitLease: Duration

    init(redis: RedisClient, prefix: String = "clapper", limit: Int, submitLease: Duration = .seconds(60)) {
        self.redis = redis
        self.prefix = prefix
        self.limit = limit
        self.submitLease = submitLease
    }

    var base: String { "\(prefix):{gov}:" }
    var slotsKey: String { base + "slots" }
    var queuedKey: String { base + "queued" }

    /// What an `acquire` or `release` decided.
    struct Grant: Sendable, Hashable {
        /// The asking task holds a slot (always false for `release`).
        var granted: Bool
        /// Other waiting tasks given a slot in the same step: the caller submits them.
        var others: [DueSet.Member]
    }

    /// Shared Lua: the line and the hand-out of free slots.
    private static let functions = #"""
    local base, now, lease, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
    local slots, queued = KEYS[1], KEYS[2]
    local priorities = {'normal', 'low'}
    local function popFair()
      for _, p in ipairs(priorities) do
        local ring = base .. 'ring:' .. p
        while true do
          local user = redis.call('LPOP', ring)
          if not user then break end
          local list = base .. 'wait:' .. p .. ':' .. user
          local member = redis.call('LPOP', list)
          if member then
            if redis.call('LLEN', list) > 0 then redis.call('RPUSH', ring, user) end
            return member
          end
        end
      end
      return nil
    end
    local function dispatch()
      local granted = {}
      redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
      while redis.call('ZCARD', slots) < limit do
        local member = popFair()
        if not member then break end
        redis.call('HDEL', queued, member)
        redis.call('ZADD', slots, now + lease, member)
        table.insert(granted, member)
      end
      return granted
    end
    local function leave(member)
      local where = redis.call('HGET', queued, member)
      if not where then return end
      redis.call('HDEL', queued, member)
      local bar = string.find(where, '|', 1, true)
      local p, user = string.sub(where, 1, bar - 1), string.sub(where, bar + 1)
      local list = base .. 'wait:' .. p .. ':' .. user
      redis.call('LREM', list, 1, member)
      if redis.call('LLEN', list) == 0 then redis.call('LREM', base .. 'ring:' .. p, 0, user) end
    end
    """#

    /// KEYS: slots, queued. ARGV: base, now ms, lease ms, limit, member, priority, user.
    /// Returns {granted 0/1, other granted members…}.
    static let acquireScript = RedisScript(functions + "\n" + #"""
    local member, p, user = ARGV[5], ARGV[6], ARGV[7]
    if redis.call('ZSCORE', slots, member) then
      redis.call('ZADD', slots, now + lease, member)
      return {1}
    end
    if redis.call('HEXISTS', queued, member) == 0 then
      redis.call('HSET', queued, member, p .. '|' .. user)
      local list = base .. 'wait:' .. p .. ':' .. user
      if redis.call('RPUSH', list, member) == 1 then redis.call('RPUSH', base .. 'ring:' .. p, user) end
    end
    local result = {0}
    for _, granted in ipairs(dispatch()) do
      if granted == member then result[1] = 1 else table.insert(result, granted) end
    end
    return result
    """#)

    /// KEYS: slots, queued. ARGV: base, now ms, lease ms, limit, then members to release (their
    /// slot, or their place in the line). Returns {0, granted members…}.
    static let releaseScript = RedisScript(functions + "\n" + #"""
    for i = 5, #ARGV do
      redis.call('ZREM', slots, ARGV[i])
      leave(ARGV[i])
    end
    local result = {0}
    for _, granted in ipairs(dispatch()) do table.insert(result, granted) end
    return result
    """#)

    /// KEYS: slots. ARGV: member, lease end ms. Extends a held slot (fal accepted the task).
    static let extendScript = RedisScript(#"""
    return redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
    """#)

    /// KEYS: slots, queued. ARGV: base, now, lease, limit, count. The first `count` waiting tasks
    /// in the order they would get slots, without changing anything.
    static let peekScript = RedisScript(functions + "\n" + #"""
    local count = tonumber(ARGV[5])
    local order = {}
    for _, p in ipairs(priorities) do
      local users = redis.call('LRANGE', base .. 'ring:' .. p, 0, count - 1)
      local lists = {}
      for i, user in ipairs(users) do lists[i] = redis.call('LRANGE', base .. 'wait:' .. p .. ':' .. user, 0, count - 1) end
      local round = 1
      local more = true
      while more and #order < count do
        more = false
        for i = 1, #users do
          local member = lists[i][round]
          if member and #order < count then table.insert(order, member); more = true end
        end
        round = round + 1
      end
    end
    return order
    """#)

    private func arguments(now: Date, lease: Duration) -> [any RedisArgumentConvertible] {
        [base, now.milliseconds, lease.milliseconds, limit]
    }

    /// Asks a slot for `member`: granted at once when it already holds one, or when the line
    /// gives it one now; otherwise it waits in the line (once, however often it asks).
    func acquire(_ member: DueSet.Member, userID: String, priority: JobPriority, now: Date) async throws -> Grant {
        let reply = try await redis.eval(
            Self.acquireScript, keys: [slotsKey, queuedKey],
            arguments: arguments(now: now, lease: submitLease) + [member.encoded, priority.rawValue, userID]
        )
        return Self.grant(reply)
    }

    /// Frees the slots of `members` (or takes them out of the line) and hands free slots to the
    /// line; returns the tasks granted, for the caller to submit.
    func release(_ members: [DueSet.Member], now: Date) async throws -> Grant {
        let reply = try await redis.eval(
            Self.releaseScript, keys: [slotsKey, queuedKey],
            arguments: arguments(now: now, lease: submitLease) + members.map(\.encoded)
        )
        return Self.grant(reply)
    }

    /// Keeps a slot until `until` (a task fal accepted holds it to its model's deadline).
    func extend(_ member: DueSet.Member, until: Date) async throws {
        _ = try await redis.eval(Self.extendScript, keys: [slotsKey], arguments: [member.encoded, until.milliseconds])
    }

    /// The first `count` waiting tasks, in the order they will get slots.
    func line(first count: Int) async throws -> [DueSet.Member] {
        let reply = try await redis.eval(Self.peekScript, keys: [slotsKey, queuedKey], arguments: arguments(now: Date(), lease: submitLease) + [count])
        return (reply.array ?? []).compactMap { $0.string.flatMap(DueSet.Member.init(encoded:)) }
    }

    /// The tasks holding slots now.
    func holders() async throws -> [DueSet.Member] {
        let reply = try await redis.send(RedisCommand("ZRANGE", slotsKey, 0, -1))
        return (reply.array ?? []).compactMap { $0.string.flatMap(DueSet.Member.init(encoded:)) }
    }

    private static func grant(_ reply: RedisValue) -> Grant {
        let parts = reply.array ?? []
        let granted = parts.first?.integer == 1
        let others = parts.dropFirst().compactMap { $0.string.flatMap(DueSet.Member.init(encoded:)) }
        return Grant(granted: granted, others: others)
    }
}
