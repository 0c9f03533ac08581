import Fal
import Foundation
import Logging
import Metrics
import Redis
import ServiceLifecycle

/// Outbound events (`CLAPPER_OUTBOUND_EVENTS`): reads the job script's outbox (a stream per shard,
/// through a consumer group, so each change is taken by one instance and one left unacknowledged
/// by a dead instance is taken over), turns each change into messages for the endpoints that want
/// them, and delivers the messages due, signed per Standard Webhooks, retried on the schedule,
/// exhausted after its last try. At least once: a message keeps its `webhook-id` across tries.
struct OutboundService: Service {
    let store: OutboundStore
    let keys: JobKeys
    let configuration: OutboundConfiguration
    let transport: any HTTPTransport
    let links: MediaLinks
    let logger: Logger
    let clock: any WallClock
    /// This instance in the outbox's consumer group.
    let consumer = "clapper-\(UUID().uuidString.prefix(12))"

    static let group = "outbound"
    static let lease: TimeInterval = 60
    static let requestTimeout: Duration = .seconds(15)

    func run() async throws {
        for shard in keys.allShards {
            // From the stream's start, so changes written before the first instance started are sent.
            _ = try? await store.redis.send(RedisCommand("XGROUP", "CREATE", keys.outbox(shard: shard), Self.group, "0", "MKSTREAM"))
        }
        logger.info("outbound events started", metadata: ["consumer": "\(consumer)"])
        var rounds = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            var busy = false
            do {
                // Every 50 rounds, changes a dead instance took and never acknowledged.
                busy = try await fanOut(takeOver: rounds % 50 == 0) || busy
                busy = try await deliver() || busy
            } catch {
                logger.warning("outbound round failed", metadata: ["error": "\(error)"])
            }
            rounds += 1
            if busy { continue }
            let interval = configuration.interval, clock = self.clock
            _ = try? await cancelWhenGracefulShutdown { try await clock.sleep(for: interval) }
        }
    }

    // MARK: Outbox -> messages

    private func fanOut(takeOver: Bool) async throws -> Bool {
        // Read once per round, and only when some shard has changes to hand out.
        var endpoints: [OutboundEndpoint]?
        var any = false
        for shard in keys.allShards {
            let key = keys.outbox(shard: shard)
            var commands = [RedisCommand("XREADGROUP", "GROUP", Self.group, consumer, "COUNT", 100, "STREAMS", key, ">")]
            if takeOver { commands.append(RedisCommand("XAUTOCLAIM", key, Self.group, consumer, 30_000, "0-0", "COUNT", 100)) }
            var entries: [(id: String, fields: [String: [UInt8]])] = []
            for (index, reply) in try await store.redis.pipeline(commands).enumerated() {
                if case .error(let message) = reply {
                    // The group is gone (the stream was deleted): make it again.
                    if message.hasPrefix("NOGROUP") { _ = try? await store.redis.send(RedisCommand("XGROUP", "CREATE", key, Self.group, "0", "MKSTREAM")) }
                    continue
                }
                let list = index == 0 ? (reply.array?.first?.array?.last?.array ?? []) : (reply.array.flatMap { $0.count > 1 ? $0[1].array : nil } ?? [])
                entries += Self.entries(list)
            }
            guard !entries.isEmpty else { continue }
            any = true
            if endpoints == nil { endpoints = try await store.endpoints().filter { !$0.disabled } }
            for entry in entries {
                try await fanOut(entry.fields, to: endpoints ?? [])
            }
            _ = try await store.redis.send(RedisCommand("XACK", arguments: [key, Self.group] + entries.map(\.id)))
        }
        return any
    }

    /// `[[id, [field, value, …]], …]` with its fields.
    static func entries(_ list: [RedisValue]) -> [(id: String, fields: [String: [UInt8]])] {
        list.compactMap { item in
            guard let pair = item.array, pair.count == 2, let id = pair[0].string, let flat = pair[1].array else { return nil }
            var fields: [String: [UInt8]] = [:]
            var index = 0
            while index + 1 < flat.count {
                if let name = flat[index].string, let value = flat[index + 1].bytes { fields[name] = value }
                index += 2
            }
            return (id, fields)
        }
    }

    private func fanOut(_ fields: [String: [UInt8]], to endpoints: [OutboundEndpoint]) async throws {
        guard let jobID = fields["id"].map({ String(decoding: $0, as: UTF8.self) }), let view = fields["job"],
              let version = fields["version"].map({ String(decoding: $0, as: UTF8.self) }),
              let userID = fields["user"].map({ String(decoding: $0, as: UTF8.self) }) else { return }
        let types = String(decoding: fields["types"] ?? [], as: UTF8.self).split(separator: ",").compactMap { OutboundEventType(rawValue: String($0)) }
        let now = clock.now
        for type in types {
            let wanting = endpoints.filter { $0.wants(type) }.map(\.id)
            guard !wanting.isEmpty else { continue }
            let id = "msg_\(jobID)_\(version)_\(type.rawValue)"
            try await store.enqueue(messageID: id, type: type, body: Self.body(type: type, view: links.presigned(view), userID: userID, at: now), endpoints: wanting, now: now)
        }
    }

    /// `{"type", "timestamp", "data"}`: data is the job view with the seed's `userId`, `provider`,
    /// `model` and `parameters` added.
    static func body(type: OutboundEventType, view: [UInt8], userID: String, at now: Date) -> [UInt8] {
        var data = view
        if data.last == UInt8(ascii: "}"), let members = try? RawJSON.members(of: view) {
            data.removeLast()
            var w = JSONWriter()
            w.beginObject()
            w.field("userId", userID)
            w.field("provider", "fal")
            w.rawField("model", members.first { $0.key == "videoModel" }.map { Array($0.value) })
            w.key("parameters")
            w.beginObject()
            for member in members where ["prompt", "durationSeconds", "feature", "audioMode", "video", "priority", "metadata"].contains(member.key) {
                w.rawField(member.key, Array(member.value))
            }
            w.endObject()
            w.endObject()
            // The new members, without their object's braces, after the view's own.
            data += [UInt8(ascii: ",")] + w.bytes.dropFirst().dropLast() + [UInt8(ascii: "}")]
        }
        var w = JSONWriter()
        w.beginObject()
        w.field("type", type.rawValue)
        w.field("timestamp", Timestamp.iso8601(now))
        w.rawField("data", data)
        w.endObject()
        return w.bytes
    }

    // MARK: Deliveries

    private func deliver() async throws -> Bool {
        let claimed = try await store.claim(now: clock.now, lease: Self.lease, limit: configuration.concurrency * 8)
        guard !claimed.isEmpty else { return false }
        let endpoints = Dictionary(try await store.endpoints().map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        // At most `concurrency` at once per endpoint on this instance; the rest are due again at once.
        var perEndpoint: [String: Int] = [:]
        await withTaskGroup(of: Void.self) { group in
            for (member, lease) in claimed {
                guard let bar = member.firstIndex(of: "|") else { continue }
                let endpointID = String(member[..<bar]), messageID = String(member[member.index(after: bar)...])
                guard let endpoint = endpoints[endpointID] else {
                    try? await store.release(member, lease: lease, next: nil)
                    continue
                }
                if endpoint.disabled {
                    // Kept (a re-enabled endpoint gets it) until its message expires.
                    try? await store.release(member, lease: lease, next: clock.now.addingTimeInterval(60))
                    continue
                }
                perEndpoint[endpointID, default: 0] += 1
                if perEndpoint[endpointID, default: 0] > configuration.concurrency {
                    try? await store.release(member, lease: lease, next: clock.now)
                    continue
                }
                if configuration.ratePerSecond > 0, await !((try? store.takeRate(endpointID, limit: configuration.ratePerSecond, now: clock.now)) ?? false) {
                    // Over the endpoint's rate this second: due again at the next one.
                    let next = (clock.now.timeIntervalSince1970.rounded(.down) + 1)
                    try? await store.release(member, lease: lease, next: Date(timeIntervalSince1970: next))
                    continue
                }
                group.addTask { await attempt(member: member, lease: lease, endpoint: endpoint, messageID: messageID) }
            }
        }
        return true
    }

    private func attempt(member: String, lease: Int64, endpoint: OutboundEndpoint, messageID: String) async {
        let now = clock.now
        guard let message = try? await store.message(messageID) else {
            try? await store.release(member, lease: lease, next: nil)
            return
        }
        let outcome = await post(message.body, messageID: messageID, to: endpoint, at: now)
        let number = outcome.ok ? 0 : ((try? await store.failedTry(member)) ?? 1)
        var w = JSONWriter()
        w.beginObject()
        w.field("messageId", messageID)
        w.field("eventType", message.type)
        w.field("at", Timestamp.iso8601(now))
        w.field("status", outcome.status)
        w.field("ok", outcome.ok)
        w.field("error", outcome.error)
        w.endObject()
        try? await store.log(w.bytes, endpointID: endpoint.id)
        Counter(label: "clapper_outbound_deliveries_total", dimensions: [("endpoint", endpoint.id), ("outcome", outcome.ok ? "delivered" : "failed")]).increment()
        if outcome.ok {
            try? await store.clearTries(member)
            try? await store.release(member, lease: lease, next: nil)
            if endpoint.failingSince != nil { await update(endpoint.id) { $0.failingSince = nil } }
            return
        }
        let failingSince = endpoint.failingSince ?? now
        if endpoint.failingSince == nil { await update(endpoint.id) { $0.failingSince = now } }
        if now.timeIntervalSince(failingSince) >= configuration.disableAfter.seconds {
            logger.warning("outbound endpoint disabled: failing too long", metadata: ["endpoint": "\(endpoint.id)"])
            await update(endpoint.id) { $0.disabled = true }
        }
        // Try `number` failed: the next is number + 1 (the first try is attempt 1).
        if let delay = configuration.schedule.delay(beforeAttempt: number + 1) {
            try? await store.release(member, lease: lease, next: now.addingTimeInterval(delay))
        } else {
            Counter(label: "clapper_outbound_exhausted_total", dimensions: [("endpoint", endpoint.id)]).increment()
            try? await store.exhaust(messageID: messageID, endpointID: endpoint.id, member: member, now: now)
            try? await store.release(member, lease: lease, next: nil)
        }
    }

    private func update(_ id: String, _ change: (inout OutboundEndpoint) -> Void) async {
        guard var endpoint = try? await store.endpoint(id) else { return }
        change(&endpoint)
        try? await store.save(endpoint)
    }

    /// One POST: the address checked again first; 2xx is delivered, anything else (a redirect
    /// included: none is followed) a failure.
    private func post(_ body: [UInt8], messageID: String, to endpoint: OutboundEndpoint, at now: Date) async -> (ok: Bool, status: Int?, error: String?) {
        let url: URL
        do {
            url = try await configuration.addressGuard.checkOffPool(endpoint.url)
        } catch {
            return (false, nil, "address refused: \(error.message)")
        }
        guard let signer = OutboundSignature(secret: endpoint.secret) else { return (false, nil, "endpoint secret unreadable") }
        var headers = signer.headers(messageID: messageID, timestamp: Int64(now.timeIntervalSince1970), body: body)
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "Clapper-Webhooks"
        do {
            let response = try await transport.send(HTTPTransportRequest(method: "POST", url: url, headers: headers, body: body), timeout: Self.requestTimeout)
            return response.isSuccess ? (true, response.status, nil) : (false, response.status, "answered \(response.status)")
        } catch {
            return (false, nil, "\(error.code)")
        }
    }
}
