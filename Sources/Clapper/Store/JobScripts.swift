import Redis

/// The Lua scripts that make each job change one atomic step.
enum JobScripts {
    /// Compare-and-set of one job: when the stored `version` equals ARGV[1] (or the job does not
    /// exist and ARGV[1] is "0"), write the new version, doc, view and raw outputs, apply index
    /// changes, append the view to the job's capped stream and publish it. Otherwise change nothing.
    ///
    /// A create with limits is admitted first (`UserLimits`): after the Idempotency-Key check and
    /// before anything is written, the user's jobs in flight (KEYS 7), jobs-per-minute bucket
    /// (KEYS 8) and today's estimated spend (KEYS 9) are held against the limits (an override in
    /// KEYS 10 wins over the default given); past one, nothing is written.
    ///
    /// KEYS: 1 job hash, 2 events stream, 3 due zset, 4 requests hash, 5 user jobs zset,
    ///       6 idempotency key (or the job key again when there is none), 7 user's active set,
    ///       8 user's rate bucket, 9 user's spend today, 10 user's limit overrides, 11 store zset,
    ///       12 outbox stream
    /// ARGV: 1 expected version, 2 new version, 3 doc, 4 view, 5 channel, 6 jobId (JSON string),
    ///       7 userId (JSON string), 8 stream max length, 9 user id, 10 idempotency value ("" = none),
    ///       11 number of output pairs N, 12 admission values A (0 or 5: max in flight, jobs per
    ///       minute, spend per day in micro-USD, the job's cost in micro-USD, now in ms; 0 = no
    ///       limit), then the A values, then N (field, bytes), then triples (op, a, b):
    ///       `zadd score member` on the due set, `zrem - member`, `hset requestId member` on requests,
    ///       `user score jobId` on the user's jobs, `usertrim minScore -` (drop older entries),
    ///       `hdel requestId -` on requests, `expire seconds -` / `persist - -` on the job's keys,
    ///       `spublish - -`: publish on a shard channel (Redis Cluster) instead of a channel,
    ///       `active - jobId` / `inactive - jobId`: the job joins / leaves the user's active set,
    ///       `trace - traceparent`: the published message carries it (tracing on),
    ///       `doc - -`: the published message carries the new doc too, so every instance can cache
    ///       the job (`JobCache`) and apply its next change without a read,
    ///       `szadd score member` / `szrem - member` on the store set (media custody),
    ///       `outbox types jobId`: the change (types, id, user, version, view) joins the outbox.
    /// Returns {1, streamId} when written, {0, currentVersion} on a version conflict,
    ///         {2, idempotencyValue} when the idempotency key already names a job,
    ///         {3, limitName, limit, retryAfterMs} when a limit refused the create.
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
    local a = tonumber(ARGV[12])
    local bucket
    if a == 5 then
      local function limit(field, default)
        local override = redis.call('HGET', KEYS[10], field)
        return tonumber(override or default) or 0
      end
      local maxInFlight = limit('maxInFlight', ARGV[13])
      local perMinute = limit('jobsPerMinute', ARGV[14])
      local spendLimit = limit('spendPerDayMicroUsd', ARGV[15])
      local cost, now = tonumber(ARGV[16]), tonumber(ARGV[17])
      if maxInFlight > 0 and redis.call('SCARD', KEYS[7]) >= maxInFlight then
        return {3, 'in_flight', maxInFlight, 0}
      end
      if spendLimit > 0 then
        local spent = 0
        for _, value in ipairs(redis.call('HVALS', KEYS[9])) do spent = spent + (tonumber(value) or 0) end
        if spent + cost > spendLimit then return {3, 'spend_per_day', spendLimit, 0} end
      end
      if perMinute > 0 then
        local state = redis.call('HMGET', KEYS[8], 'tokens', 'at')
        local tokens, at = tonumber(state[1]) or perMinute, tonumber(state[2]) or now
        tokens = math.min(perMinute, tokens + math.max(0, now - at) * perMinute / 60000)
        if tokens < 1 then
          return {3, 'jobs_per_minute', perMinute, math.ceil((1 - tokens) * 60000 / perMinute)}
        end
        bucket = {tokens - 1, now}
      end
    end
    if bucket then
      redis.call('HSET', KEYS[8], 'tokens', tostring(bucket[1]), 'at', tostring(bucket[2]))
      redis.call('PEXPIRE', KEYS[8], 120000)
    end
    redis.call('HSET', KEYS[1], 'version', ARGV[2], 'doc', ARGV[3], 'view', ARGV[4], 'user', ARGV[9])
    local n = tonumber(ARGV[11])
    local i = 13 + a
    for _ = 1, n do
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
      i = i + 2
    end
    local publish = 'PUBLISH'
    local trace = ''
    local doc = ''
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
      elseif op == 'active' then redis.call('SADD', KEYS[7], b)
      elseif op == 'inactive' then redis.call('SREM', KEYS[7], b)
      elseif op == 'szadd' then redis.call('ZADD', KEYS[11], a, b)
      elseif op == 'szrem' then redis.call('ZREM', KEYS[11], b)
      elseif op == 'outbox' then
        redis.call('XADD', KEYS[12], 'MAXLEN', '~', '100000', '*', 'types', a, 'id', b, 'user', ARGV[9], 'version', ARGV[2], 'job', ARGV[4])
      elseif op == 'trace' then trace = ',"traceparent":"' .. b .. '"'
      elseif op == 'doc' then doc = ',"doc":' .. ARGV[3]
      end
      i = i + 3
    end
    if ARGV[1] == '0' and ARGV[10] ~= '' then
      redis.call('SET', KEYS[6], ARGV[10], 'EX', 86400)
    end
    local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'job', ARGV[4])
    redis.call(publish, ARGV[5], '{"jobId":' .. ARGV[6] .. ',"userId":' .. ARGV[7] .. ',"id":"' .. id .. '","job":' .. ARGV[4] .. trace .. ',"version":' .. ARGV[2] .. doc .. '}')
    return {1, id}
    """#)
}
