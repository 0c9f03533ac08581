import Redis

/// The Lua scripts that make each job change one atomic step.
enum JobScripts {
    /// Compare-and-set of one job: when the stored `version` equals ARGV[1] (or the job does not
    /// exist and ARGV[1] is "0"), write the new version, doc, view and raw outputs, apply index
    /// changes, append the view to the job's capped stream and publish it. Otherwise change nothing.
    ///
    /// KEYS: 1 job hash, 2 events stream, 3 due zset, 4 requests hash, 5 user jobs zset,
    ///       6 idempotency key (or the job key again when there is none)
    /// ARGV: 1 expected version, 2 new version, 3 doc, 4 view, 5 channel, 6 jobId (JSON string),
    ///       7 userId (JSON string), 8 stream max length, 9 user id, 10 idempotency value ("" = none),
    ///       11 number of output pairs N, then N (field, bytes), then triples (op, a, b):
    ///       `zadd score member` on the due set, `zrem - member`, `hset requestId member` on requests,
    ///       `user score jobId` on the user's jobs, `usertrim minScore -` (drop older entries),
    ///       `hdel requestId -` on requests, `expire seconds -` / `persist - -` on the job's keys,
    ///       `spublish - -`: publish on a shard channel (Redis Cluster) instead of a channel.
    /// Returns {1, streamId} when written, {0, currentVersion} on a version conflict,
    ///         {2, idempotencyValue} when the idempotency key already names a job.
    static let apply = RedisScript(#"""
    local current = redis.call('HGET', KEYS[1], 'version')
    if ARGV[1] == '0' then
      if ARGV[10] ~= '' then
        local existing = redis.call('GET', KEYS[6])
        if existing then return {2, existing} end
      end
      if current then return {0, current} end
    elseif current ~= ARGV[1] then
      return {0, current or ''}
    end
    redis.call('HSET', KEYS[1], 'version', ARGV[2], 'doc', ARGV[3], 'view', ARGV[4], 'user', ARGV[9])
    local n = tonumber(ARGV[11])
    local i = 12
    for _ = 1, n do
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
      i = i + 2
    end
    local publish = 'PUBLISH'
    while i + 2 <= #ARGV do
      local op, a, b = ARGV[i], ARGV[i + 1], ARGV[i + 2]
      if op == 'zadd' then redis.call('ZADD', KEYS[3], a, b)
      elseif op == 'zrem' then redis.call('ZREM', KEYS[3], b)
      elseif op == 'hset' then redis.call('HSET', KEYS[4], a, b)
      elseif op == 'user' then redis.call('ZADD', KEYS[5], a, b)
      elseif op == 'usertrim' then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. a)
      elseif op == 'hdel' then redis.call('HDEL', KEYS[4], a)
      elseif op == 'expire' then redis.call('EXPIRE', KEYS[1], a); redis.call('EXPIRE', KEYS[2], a)
      elseif op == 'persist' then redis.call('PERSIST', KEYS[1]); redis.call('PERSIST', KEYS[2])
      elseif op == 'spublish' then publish = 'SPUBLISH'
      end
      i = i + 3
    end
    if ARGV[1] == '0' and ARGV[10] ~= '' then
      redis.call('SET', KEYS[6], ARGV[10], 'EX', 86400)
    end
    local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'job', ARGV[4])
    redis.call(publish, ARGV[5], '{"jobId":' .. ARGV[6] .. ',"userId":' .. ARGV[7] .. ',"id":"' .. id .. '","job":' .. ARGV[4] .. '}')
    return {1, id}
    """#)
}
