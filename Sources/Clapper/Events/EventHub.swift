import Foundation
import Logging
import Metrics
import NIOCore
import Redis
import ServiceLifecycle
import Synchronization
import Tracing

/// Fans job changes out to this instance's event streams.
///
/// One Redis subscription per instance on `clapper:events` (every change of every job, from every
/// instance, is published there by `JobScripts.apply`); on a Redis Cluster one per shard channel
/// (`JobKeys`), each on the master that serves it now, found again after a failover. Each message is parsed once and handed to
/// the local subscribers of its job and of its owner, each through a bounded buffer. When the
/// subscription comes back after a drop (`.resubscribed`) or its own buffer overflowed
/// (`.overflow`), every subscribed job is read again from its Redis stream from just before the
/// last change seen, so no change is lost across the gap (subscribers drop what they already
/// have by stream id). Graceful shutdown ends every subscriber as `.shutdown`. One shared tick
/// (every `heartbeatResolution`) wakes the streams that have been idle for their heartbeat
/// interval, so no stream needs a timer of its own.
///
/// Run it as a `Service` after the `RedisClient` and before the HTTP server.
public final class EventHub: Service, Sendable {
    private let redis: RedisClient
    private let subscribers: [RedisSubscriber]
    private let keys: JobKeys
    /// Changes one subscriber may have pending before it is dropped.
    let bufferSize: Int
    private let logger: Logger
    /// A span per change handed to this instance's streams, in the writer's trace (off: none).
    let tracer: ClapperTracer
    /// Media custody: each change's view gets fresh presigned URLs here, once per instance.
    let links: MediaLinks
    private let state = Mutex(State())
    private let subscribersGauge = Gauge(label: "clapper_sse_subscribers")
    /// Streams ended because they fell behind (both kinds of target).
    static let droppedCounter = Counter(label: "clapper_sse_dropped_total")

    private struct State {
        var nextID = 0
        var byJob: [String: [Int: any EventTarget]] = [:]
        var byUser: [String: [Int: any EventTarget]] = [:]
        var count = 0
        /// The newest change id seen on the channel: catch-up after a gap starts just before it.
        var lastSeen: StreamID?
        var lastSeenJob = ""
        var stopped = false
        var subscribed = false
        /// Subscriptions (one per shard channel) in place at least once.
        var subscriptionsUp = 0
        var catchUps = 0
        /// The shortest heartbeat interval subscribed so far.
        var shortestHeartbeat: Duration?
    }

    /// How far before the last change seen a catch-up read starts (clock steps, other streams).
    static let catchUpSlackMilliseconds: UInt64 = 5000
    /// Jobs per pipeline in a catch-up, and the user's most recent jobs a catch-up looks at.
    static let catchUpBatch = 256
    static let recentJobsPerUser = 100

    /// - Parameters:
    ///   - redis: the pool (catch-up reads).
    ///   - subscriberConfiguration: where the subscription connects (its own connection).
    ///   - bufferSize: changes one subscriber may have pending before it is dropped.
    public convenience init(redis: RedisClient, subscriberConfiguration: RedisConfiguration, keyPrefix: String = "clapper", bufferSize: Int = 256, logger: Logger) {
        self.init(redis: redis, subscriberConfiguration: subscriberConfiguration, keys: redis.isCluster ? .cluster(prefix: keyPrefix) : JobKeys(prefix: keyPrefix), bufferSize: bufferSize, logger: logger)
    }

    init(redis: RedisClient, subscriberConfiguration: RedisConfiguration, keys: JobKeys, bufferSize: Int = 256, tracer: ClapperTracer = .off, links: MediaLinks = .off, logger: Logger) {
        self.redis = redis
        self.tracer = tracer
        self.links = links
        self.keys = keys
        self.subscribers = keys.allShards.map { shard in
            let channel = keys.channel(shard: shard)
            guard keys.isSharded else { return RedisSubscriber(configuration: subscriberConfiguration, channels: [channel], logger: logger) }
            return RedisSubscriber(
                configuration: subscriberConfiguration,
                channels: [channel],
                sharded: true,
                node: { redis.nodeURL(forKey: channel) },
                onLost: { redis.topologyMayHaveChanged() },
                logger: logger
            )
        }
        self.bufferSize = max(1, bufferSize)
        self.logger = logger
    }

    /// The targets subscribed to one job's changes, or to one user's (for tests).
    func targets(jobID: String) -> [any EventTarget] {
        state.withLock { $0.byJob[jobID].map { Array($0.values) } ?? [] }
    }

    func targets(userID: String) -> [any EventTarget] {
        state.withLock { $0.byUser[userID].map { Array($0.values) } ?? [] }
    }

    /// Local subscribers right now.
    public var subscriberCount: Int { state.withLock { $0.count } }

    /// Catch-ups done (after `.subscribed`, `.resubscribed` and `.overflow`).
    var catchUpCount: Int { state.withLock { $0.catchUps } }

    /// Whether the Redis subscription is in place (after the first `SUBSCRIBE`).
    public var isSubscribed: Bool { state.withLock { $0.subscribed } }

    // MARK: - Subscribing

    /// How often the shared heartbeat tick looks for idle streams: a quarter of the shortest
    /// heartbeat interval subscribed (within these bounds), so a heartbeat goes out between one
    /// interval and one and a quarter after a stream's last write.
    static let heartbeatResolution: ClosedRange<Duration> = .milliseconds(50) ... .seconds(1)

    /// Changes of one job (`jobID`) or of all of one user's jobs (`userID`), to a sink drained by a
    /// task; a heartbeat after `heartbeat` without a write.
    func subscribe(jobID: String?, userID: String?, heartbeat: Duration) -> EventSubscription {
        let (sink, floor) = add { [bufferSize] id in
            EventSink(id: id, jobID: jobID, userID: userID, bufferSize: bufferSize, heartbeat: heartbeat)
        }
        return EventSubscription(sink: sink, floor: floor, hub: self)
    }

    /// Registers the target `make` builds (with a fresh id) for its job's or user's changes, and
    /// returns it with the newest change handed out so far. After shutdown it is ended at once
    /// as `.shutdown` instead. `remove` lets go of it.
    func add<Target: EventTarget>(_ make: (Int) -> Target) -> (Target, EventSubscription.Floor?) {
        let (target, floor, count) = state.withLock { state -> (Target, EventSubscription.Floor?, Int?) in
            state.nextID += 1
            let target = make(state.nextID)
            state.shortestHeartbeat = min(state.shortestHeartbeat ?? target.heartbeatInterval, target.heartbeatInterval)
            let floor = state.lastSeen.map { EventSubscription.Floor(jobID: state.lastSeenJob, id: $0) }
            guard !state.stopped else { return (target, floor, nil) }
            if let jobID = target.jobID { state.byJob[jobID, default: [:]][target.id] = target }
            if let userID = target.userID { state.byUser[userID, default: [:]][target.id] = target }
            state.count += 1
            return (target, floor, state.count)
        }
        if let count {
            subscribersGauge.record(count)
        } else {
            target.end(.shutdown)
        }
        return (target, floor)
    }

    func remove(_ sink: any EventTarget) {
        let count = state.withLock { state -> Int? in
            var removed = false
            if let jobID = sink.jobID, state.byJob[jobID]?.removeValue(forKey: sink.id) != nil {
                removed = true
                if state.byJob[jobID]?.isEmpty == true { state.byJob[jobID] = nil }
            }
            if let userID = sink.userID, state.byUser[userID]?.removeValue(forKey: sink.id) != nil {
                removed = true
                if state.byUser[userID]?.isEmpty == true { state.byUser[userID] = nil }
            }
            guard removed else { return nil }
            state.count -= 1
            return state.count
        }
        if let count { subscribersGauge.record(count) }
    }

    // MARK: - Running

    public func run() async throws {
        defer { endAll() }
        if keys.isSharded {
            // Subscribers ask the topology where their channel lives: read it once first. If the
            // cluster cannot be reached yet, they keep asking (with backoff) until it can.
            do {
                try await redis.refreshTopology()
            } catch {
                logger.warning("Redis Cluster topology not readable yet; subscriptions will retry", metadata: ["error": "\(error.message)"])
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for subscriber in subscribers {
                group.addTask { try await subscriber.run() }
            }
            await withDiscardingTaskGroup { ticker in
                ticker.addTask { await self.tickHeartbeats() }
                await withDiscardingTaskGroup { consumers in
                    for subscriber in subscribers {
                        consumers.addTask { await self.consumeEvents(of: subscriber) }
                    }
                }
                ticker.cancelAll()
            }
            try await group.waitForAll()
        }
    }

    /// Parses and hands out every message of one subscription, catching up after each gap.
    private func consumeEvents(of subscriber: RedisSubscriber) async {
        for await event in subscriber.events {
            switch event {
            case .message(_, let payload):
                guard let envelope = JobChange.Envelope(message: payload) else {
                    logger.warning("unreadable message on the events channel", metadata: ["bytes": "\(payload.count)"])
                    continue
                }
                Self.recordLag(ofChangeAt: envelope.id)
                // Most changes have no stream on a given instance: noted as seen, nothing more
                // (no view parsed, no frame made).
                let targets = noteSeen(jobID: envelope.jobID, userID: envelope.userID, id: envelope.id)
                guard targets.count > 0 else { continue }
                let change = JobChange(envelope, presign: links)
                if tracer.isOn, let parent = change.traceparent {
                    await tracer.span("sse.deliver", kind: .consumer, parent: parent) { span in
                        span?.attributes["clapper.job_id"] = change.jobID
                        span?.attributes["clapper.streams"] = deliver(change, to: targets)
                    }
                } else {
                    deliver(change, to: targets)
                }
            case .subscribed:
                // Until a change is seen, "now" on Redis's clock is the last-seen point: a catch-up
                // then reads back only the slack before it, not every stream's whole history.
                // A reply out of range (not a real clock) is ignored, never trapped on.
                let seconds = (try? await redis.send("TIME").array?.first?.integer).flatMap { UInt64(exactly: $0) }
                let count = subscribers.count
                state.withLock { state in
                    state.subscriptionsUp += 1
                    state.subscribed = state.subscriptionsUp >= count
                    if state.lastSeen == nil, let seconds, seconds <= UInt64.max / 1000 {
                        state.lastSeen = StreamID(milliseconds: seconds * 1000, sequence: 0)
                    }
                }
                await catchUp(reason: "subscribed")
            case .resubscribed:
                await catchUp(reason: "resubscribed")
            case .overflow:
                await catchUp(reason: "overflow")
            }
        }
    }

    /// The shared heartbeat tick, until cancelled.
    private func tickHeartbeats() async {
        while true {
            let shortest = state.withLock { $0.shortestHeartbeat } ?? Self.heartbeatResolution.upperBound
            do {
                try await Task.sleep(for: min(max(shortest / 4, Self.heartbeatResolution.lowerBound), Self.heartbeatResolution.upperBound))
            } catch {
                return
            }
            let targets = state.withLock { state -> LoopBuckets in
                var targets = LoopBuckets()
                for job in state.byJob.values { targets.add(job.values) }
                for user in state.byUser.values { targets.add(user.values) }
                return targets
            }
            targets.run(ContinuousClock.now) { target, now in target.heartbeat(now: now) }
        }
    }

    /// Ends every subscriber as `.shutdown` and takes no more.
    private func endAll() {
        let sinks = state.withLock { state -> [any EventTarget] in
            state.stopped = true
            let all = state.byJob.values.flatMap(\.values) + state.byUser.values.flatMap(\.values)
            state.byJob = [:]
            state.byUser = [:]
            state.count = 0
            return all
        }
        for sink in sinks { sink.end(.shutdown) }
        subscribersGauge.record(0)
    }

    /// `clapper_event_delivery_lag_seconds`: from the change's write (its stream id is Redis's clock
    /// at `XADD`, in ms) to its hand-out to this instance's streams; clocks of different machines
    /// add their skew.
    static let deliveryLag = Metrics.Timer(label: "clapper_event_delivery_lag_seconds")

    static func recordLag(ofChangeAt id: StreamID) {
        let now = UInt64(clamping: Date().milliseconds)
        let lag = now > id.milliseconds ? now - id.milliseconds : 0
        deliveryLag.recordNanoseconds(Int64(clamping: min(lag, 86_400_000) * 1_000_000))
    }

    /// Notes a change as seen and returns this instance's streams of its job and of `userID`, in
    /// one look under the lock: a stream added after it starts from this change (its floor).
    private func noteSeen(jobID: String, userID: String?, id: StreamID) -> LoopBuckets {
        state.withLock { state in
            if state.lastSeen.map({ $0 < id }) ?? true {
                state.lastSeen = id
                state.lastSeenJob = jobID
            }
            var targets = LoopBuckets()
            if let job = state.byJob[jobID] { targets.add(job.values) }
            if let userID, let users = state.byUser[userID] { targets.add(users.values) }
            return targets
        }
    }

    /// Hands one change to the subscribers of its job and of its owner; returns how many.
    @discardableResult
    func dispatch(_ change: JobChange, toUsers: Bool = true) -> Int {
        deliver(change, to: noteSeen(jobID: change.jobID, userID: toUsers ? change.userID : nil, id: change.id))
    }

    /// Hands `change` to `targets`, each on its own loop; a target that fell behind is dropped.
    @discardableResult
    private func deliver(_ change: JobChange, to targets: LoopBuckets) -> Int {
        // With more than one loop, each loop gets its own copy of the change's bytes: the streams
        // of one loop then count references on memory that no other core writes to.
        targets.run(change, perLoopCopy: JobChange.init(copying:)) { target, change in
            guard !target.deliver(change) else { return }
            self.remove(target)
            Self.droppedCounter.increment()
            self.logger.info("event stream fell behind and was dropped", metadata: ["job": "\(target.jobID ?? "-")"])
        }
        return targets.count
    }

    /// Targets sorted by the event loop they must be called on (most of the time the server's
    /// two), and those that may be called from anywhere.
    struct LoopBuckets {
        var anywhere: [any EventTarget] = []
        var loops: [(loop: any EventLoop, targets: [any EventTarget])] = []

        var count: Int { loops.reduce(anywhere.count) { $0 + $1.targets.count } }

        mutating func add(_ targets: some Collection<any EventTarget>) {
            for target in targets {
                guard let loop = target.eventLoop else {
                    anywhere.append(target)
                    continue
                }
                if let index = loops.firstIndex(where: { $0.loop === loop }) {
                    loops[index].targets.append(target)
                } else {
                    var bucket: [any EventTarget] = []
                    bucket.reserveCapacity(targets.count)
                    bucket.append(target)
                    loops.append((loop, bucket))
                }
            }
        }

        /// Runs `body` for each target with `value`: at once for those without a loop, and for the
        /// others in one task per event loop, on that loop. With more than one loop and a
        /// `perLoopCopy`, each loop's targets get that loop's copy of `value`, made on the loop.
        func run<Value: Sendable>(
            _ value: Value,
            perLoopCopy: (@Sendable (Value) -> Value)? = nil,
            _ body: @escaping @Sendable (any EventTarget, Value) -> Void
        ) {
            for target in anywhere { body(target, value) }
            let copy = loops.count > 1 ? perLoopCopy : nil
            for (loop, targets) in loops {
                // Already on that loop (NIO's loops as Swift Concurrency's executor): delivered now,
                // not queued behind the loop's other work; this loop keeps the original bytes.
                if loop.inEventLoop {
                    for target in targets { body(target, value) }
                    continue
                }
                loop.execute {
                    let local = copy?(value) ?? value
                    for target in targets { body(target, local) }
                }
            }
        }
    }

    // MARK: - Catching up after a gap

    /// Reads every subscribed job's stream (and the recent jobs of every subscribed user) from just
    /// before the last change seen and hands the entries out again; subscribers skip the ones they
    /// have. When Redis cannot be read, every subscriber is dropped so it reconnects and replays.
    private func catchUp(reason: String) async {
        defer { state.withLock { $0.catchUps += 1 } }
        let (jobIDs, userIDs, lastSeen) = state.withLock { state in
            (Array(state.byJob.keys), Array(state.byUser.keys), state.lastSeen)
        }
        guard !jobIDs.isEmpty || !userIDs.isEmpty else { return }
        let start = lastSeen.map { "\($0.milliseconds > Self.catchUpSlackMilliseconds ? $0.milliseconds - Self.catchUpSlackMilliseconds : 0)-0" } ?? "-"
        logger.info("catching event streams up", metadata: ["reason": "\(reason)", "jobs": "\(jobIDs.count)", "users": "\(userIDs.count)", "from": "\(start)"])
        do {
            // Jobs of subscribed users, with their owner, so the users' streams get them too.
            var owners: [String: String] = [:]
            for batch in userIDs.chunked(Self.catchUpBatch) {
                for (jobID, userID) in try await EventHistory.recentJobs(redis: redis, keys: keys, of: batch, limit: Self.recentJobsPerUser) {
                    owners[jobID] = userID
                }
            }
            var all = Set(jobIDs)
            all.formUnion(owners.keys)
            for batch in Array(all).chunked(Self.catchUpBatch) {
                for (jobID, entries) in try await EventHistory.changes(redis: redis, keys: keys, of: batch, from: start) {
                    for entry in entries {
                        dispatch(JobChange(jobID: jobID, userID: owners[jobID], id: entry.id, view: links.presigned(entry.view)), toUsers: owners[jobID] != nil)
                    }
                }
            }
        } catch {
            logger.warning("catch-up failed; dropping every event stream so clients replay", metadata: ["error": "\(error)"])
            let sinks = state.withLock { state in state.byJob.values.flatMap(\.values) + state.byUser.values.flatMap(\.values) }
            for sink in sinks {
                sink.end(.dropped)
                remove(sink)
            }
        }
    }
}

fileprivate extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
