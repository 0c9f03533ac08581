import Redis

/// What a stream needs when it opens, read in one atomic step (so it is consistent with the
/// change that wrote it): the job's owner and view, the id of its latest change, and, when the
/// client sent a `Last-Event-ID` that is still in the job's stream, every change after it.
struct EventHistory: Sendable {
    struct Entry: Sendable {
        let id: StreamID
        let view: [UInt8]
    }

    enum Start: Sendable {
        /// Send the current view (no usable Last-Event-ID: none, malformed, unknown or trimmed).
        case snapshot
        /// Send these changes, oldest first (possibly none: the client is up to date).
        case replay([Entry])
    }

    let userID: String
    let view: [UInt8]
    /// The latest change in the stream, which the view reflects (nil if the stream is gone).
    let lastID: StreamID?
    let start: Start

    /// KEYS: 1 job hash, 2 events stream. ARGV: 1 Last-Event-ID (validated) or "".
    /// Returns nil for no job, else {user, view, lastId or "", 1 = replay / 0 = snapshot, id, view, …}.
    /// The id must still be in the stream: trimming removes the oldest entries first, so then
    /// every later change is there too.
    static let script = RedisScript(#"""
    local f = redis.call('HMGET', KEYS[1], 'user', 'view')
    if not f[1] or not f[2] then return false end
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    local lastId = ''
    if #last > 0 then lastId = last[1][1] end
    if ARGV[1] ~= '' and #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) > 0 then
      local out = {f[1], f[2], lastId, 1}
      for _, e in ipairs(redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+')) do
        local fields = e[2]
        for i = 1, #fields, 2 do
          if fields[i] == 'job' then
            out[#out + 1] = e[1]
            out[#out + 1] = fields[i + 1]
          end
        end
      end
      return out
    end
    return {f[1], f[2], lastId, 0}
    """#)

    static func read(redis: RedisClient, keys: JobKeys, jobID: String, after lastEventID: StreamID?, links: MediaLinks = .off) async throws -> EventHistory? {
        let reply = try await redis.eval(script, keys: [keys.job(jobID), keys.events(jobID)], arguments: [lastEventID?.description ?? ""])
        guard let parts = reply.array, parts.count >= 4,
              let userID = parts[0].string, let view = parts[1].bytes, let mode = parts[3].integer
        else { return nil }
        let lastID = parts[2].string.flatMap { StreamID($0) }
        guard mode == 1 else { return EventHistory(userID: userID, view: links.presigned(view), lastID: lastID, start: .snapshot) }
        var entries: [Entry] = []
        var index = 4
        while index + 1 < parts.count {
            if let id = parts[index].string.flatMap({ StreamID($0) }), let entryView = parts[index + 1].bytes {
                entries.append(Entry(id: id, view: links.presigned(entryView)))
            }
            index += 2
        }
        return EventHistory(userID: userID, view: links.presigned(view), lastID: lastID, start: .replay(entries))
    }

    /// The entries of an `XRANGE` reply: `[[id, [field, value, …]], …]`, field `job`.
    static func entries(_ reply: RedisValue) -> [Entry] {
        (reply.array ?? []).compactMap { item in
            guard let pair = item.array, pair.count == 2, let id = pair[0].string.flatMap({ StreamID($0) }),
                  let fields = pair[1].array
            else { return nil }
            var index = 0
            while index + 1 < fields.count {
                if fields[index].string == "job", let view = fields[index + 1].bytes { return Entry(id: id, view: view) }
                index += 2
            }
            return nil
        }
    }

    /// For a user's stream resumed at `lastEventID`: the changes of the user's recent jobs from the
    /// same millisecond on (stream ids of different jobs only order by time), oldest first.
    /// At least once: a change in that same millisecond may come again (views carry `version`).
    static func userReplay(redis: RedisClient, keys: JobKeys, userID: String, after lastEventID: StreamID, recentJobs: Int, links: MediaLinks = .off) async throws -> [JobChange] {
        let jobIDs = try await Self.recentJobs(redis: redis, keys: keys, of: [userID], limit: recentJobs).map(\.jobID)
        var changes: [JobChange] = []
        for (jobID, entries) in try await Self.changes(redis: redis, keys: keys, of: jobIDs, from: "\(lastEventID.milliseconds)-0") {
            for entry in entries {
                changes.append(JobChange(jobID: jobID, userID: userID, id: entry.id, view: links.presigned(entry.view)))
            }
        }
        return changes.sorted { $0.id < $1.id }
    }

    /// The `limit` newest jobs of each of `userIDs`, with their owner: one pipeline.
    static func recentJobs(redis: RedisClient, keys: JobKeys, of userIDs: some Collection<String>, limit: Int) async throws -> [(jobID: String, userID: String)] {
        guard !userIDs.isEmpty else { return [] }
        let replies = try await redis.pipeline(userIDs.map { RedisCommand("ZREVRANGE", keys.userJobs($0), 0, limit - 1) })
        return zip(userIDs, replies).flatMap { userID, reply in
            (reply.array ?? []).compactMap(\.string).map { (jobID: $0, userID: userID) }
        }
    }

    /// Each job's changes from stream id `start` (`ms-seq`, or `-` for all) on, at most 10,000
    /// per job: one pipeline. An error reply fails the whole read.
    static func changes(redis: RedisClient, keys: JobKeys, of jobIDs: some Collection<String>, from start: String) async throws -> [(jobID: String, entries: [Entry])] {
        guard !jobIDs.isEmpty else { return [] }
        let replies = try await redis.pipeline(jobIDs.map { RedisCommand("XRANGE", keys.events($0), start, "+", "COUNT", 10_000) })
        return try zip(jobIDs, replies).map { jobID, reply in
            if case .error(let message) = reply { throw RedisError(.server, message) }
            return (jobID, entries(reply))
        }
    }
}
