import Foundation
import Redis

/// Outbound events in Redis: endpoints, messages, the deliveries due, tries, each endpoint's
/// attempt log and exhausted messages. Every key shares the hash tag `{outbound}` (one slot on a
/// cluster); the outbox streams the job script writes are per shard (`JobKeys.outbox`).
struct OutboundStore: Sendable {
    let redis: RedisClient
    let keys: JobKeys

    private var tag: String { "\(keys.prefix):{outbound}" }
    var endpointsKey: String { "\(tag):endpoints" }
    var dueKey: String { "\(tag):due" }
    var triesKey: String { "\(tag):tries" }
    func messageKey(_ id: String) -> String { "\(tag):msg:\(id)" }
    func logKey(_ endpointID: String) -> String { "\(tag):log:\(endpointID)" }
    func rateKey(_ endpointID: String, second: Int64) -> String { "\(tag):rate:\(endpointID):\(second)" }
    func exhaustedKey(_ endpointID: String) -> String { "\(tag):exhausted:\(endpointID)" }

    /// Messages outlive the longest retry schedule (about 28 hours) with room for a replay.
    static let messageSeconds = 7 * 24 * 3600
    static let logLength = 100

    // MARK: Endpoints

    func endpoints() async throws -> [OutboundEndpoint] {
        let reply = try await redis.send(RedisCommand("HVALS", endpointsKey))
        return (reply.array ?? []).compactMap { $0.bytes.flatMap { try? JobStore.decoder.decode(OutboundEndpoint.self, from: Data($0)) } }
            .sorted { $0.createdAt < $1.createdAt }
    }

    func endpoint(_ id: String) async throws -> OutboundEndpoint? {
        try await redis.send(RedisCommand("HGET", endpointsKey, id)).bytes.flatMap { try? JobStore.decoder.decode(OutboundEndpoint.self, from: Data($0)) }
    }

    func save(_ endpoint: OutboundEndpoint) async throws {
        _ = try await redis.send(RedisCommand("HSET", endpointsKey, endpoint.id, Array(try JobStore.encoder.encode(endpoint))))
    }

    /// Removes the endpoint, its log and exhausted list; its deliveries still due are dropped
    /// when they come due (the endpoint is gone).
    func delete(_ id: String) async throws -> Bool {
        let replies = try await redis.pipeline([RedisCommand("HDEL", endpointsKey, id), RedisCommand("DEL", logKey(id), exhaustedKey(id))])
        return replies.first?.integer == 1
    }

    /// Takes one of the endpoint's `limit` tries in the second `now` falls in (every instance
    /// counts in the same key); false when they are taken.
    func takeRate(_ endpointID: String, limit: Int, now: Date) async throws -> Bool {
        let second = Int64(now.timeIntervalSince1970.rounded(.down))
        let key = rateKey(endpointID, second: second)
        let replies = try await redis.pipeline([RedisCommand("INCR", key), RedisCommand("EXPIRE", key, 2)])
        return (replies.first?.integer ?? Int64.max) <= Int64(limit)
    }

    // MARK: Messages and deliveries

    /// Stores `body` as message `id` (once) and makes it due now for each endpoint (once: a
    /// repeat of the same change, say after a crash before its outbox entry was acknowledged,
    /// adds nothing).
    func enqueue(messageID id: String, type: OutboundEventType, body: [UInt8], endpoints: [String], now: Date) async throws {
        var commands = [
            RedisCommand("HSETNX", messageKey(id), "body", body),
            RedisCommand("HSETNX", messageKey(id), "type", type.rawValue),
            RedisCommand("EXPIRE", messageKey(id), Self.messageSeconds),
        ]
        for endpoint in endpoints {
            commands.append(RedisCommand("ZADD", dueKey, "NX", now.milliseconds, "\(endpoint)|\(id)"))
        }
        for reply in try await redis.pipeline(commands) {
            if case .error(let message) = reply { throw RedisError(.server, message) }
        }
    }

    func message(_ id: String) async throws -> (type: String, body: [UInt8])? {
        let reply = try await redis.send(RedisCommand("HMGET", messageKey(id), "type", "body"))
        guard let fields = reply.array, fields.count == 2, let type = fields[0].string, let body = fields[1].bytes else { return nil }
        return (type, body)
    }

    /// Claims up to `limit` due deliveries (a lease, as the due set's claim).
    func claim(now: Date, lease: TimeInterval, limit: Int) async throws -> [(member: String, score: Int64)] {
        let until = now.addingTimeInterval(lease).milliseconds
        let reply = try await redis.eval(DueSet.claimScript, keys: [dueKey], arguments: [now.milliseconds, until, limit])
        return (reply.array ?? []).compactMap { $0.string.map { ($0, until) } }
    }

    /// Ends a claim: due again at `next`, or off the set (nil), unless something moved it since.
    func release(_ member: String, lease: Int64, next: Date?) async throws {
        _ = try await redis.eval(DueSet.releaseScript, keys: [dueKey], arguments: [member, lease, next.map { String($0.milliseconds) } ?? ""])
    }

    /// Counts a failed try of `member`; returns how many have failed.
    func failedTry(_ member: String) async throws -> Int {
        Int(clamping: try await redis.send(RedisCommand("HINCRBY", triesKey, member, 1)).integer ?? 1)
    }

    func clearTries(_ member: String) async throws {
        _ = try await redis.send(RedisCommand("HDEL", triesKey, member))
    }

    func log(_ attempt: [UInt8], endpointID: String) async throws {
        _ = try await redis.pipeline([RedisCommand("LPUSH", logKey(endpointID), attempt), RedisCommand("LTRIM", logKey(endpointID), 0, Self.logLength - 1)])
    }

    func attempts(_ endpointID: String) async throws -> [[UInt8]] {
        (try await redis.send(RedisCommand("LRANGE", logKey(endpointID), 0, Self.logLength - 1)).array ?? []).compactMap(\.bytes)
    }

    func exhaust(messageID: String, endpointID: String, member: String, now: Date) async throws {
        _ = try await redis.pipeline([
            RedisCommand("ZADD", exhaustedKey(endpointID), now.milliseconds, messageID),
            RedisCommand("ZREMRANGEBYRANK", exhaustedKey(endpointID), 0, -1001),
            RedisCommand("HDEL", triesKey, member),
        ])
    }

    func exhausted(_ endpointID: String) async throws -> [String] {
        (try await redis.send(RedisCommand("ZRANGE", exhaustedKey(endpointID), 0, -1)).array ?? []).compactMap(\.string)
    }

    /// Sends messages again to one endpoint: those named, or every exhausted one; returns how many.
    func replay(endpointID: String, messageIDs: [String]?, now: Date) async throws -> Int {
        let ids: [String]
        if let messageIDs { ids = messageIDs } else { ids = try await exhausted(endpointID) }
        guard !ids.isEmpty else { return 0 }
        var commands: [RedisCommand] = []
        for id in ids {
            commands.append(RedisCommand("ZADD", dueKey, now.milliseconds, "\(endpointID)|\(id)"))
            commands.append(RedisCommand("ZREM", exhaustedKey(endpointID), id))
            commands.append(RedisCommand("HDEL", triesKey, "\(endpointID)|\(id)"))
        }
        _ = try await redis.pipeline(commands)
        return ids.count
    }
}
