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
/// have by stream id). Graceful shutdown ends every subscriber as `.shutdown`. Heartbeats: each
/// event loop's `HeartbeatSchedule` keeps its channel streams', one timer a loop; one shared tick
/// (every `heartbeatResolution`) wakes the `EventSink`s that have been idle for their interval.
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
    /// The jobs in flight this instance keeps (`JobStore.cache`): each published change with its doc
    /// goes in, so the job's next change here needs no read first; one without (settled) goes out.
    let cache: JobCache?
    private let state = Mutex(State())
    /// Each event loop's delivery queue, made when the loop's first change is handed out.
    private let deliveries = Mutex<[ObjectIdentifier: LoopDelivery]>([:])
    /// Each event loop's heartbeat schedule, made when the loop's first stream opens.
    private let schedules = Mutex<[ObjectIdentifier: NIOLoopBound<HeartbeatSchedule>]>([:])
    private let subscribersGauge = Gauge(label: "clapper_sse_subscribers")
    /// Streams ended because they fell behind (both kinds of target).
    static let droppedCounter = Counter(label: "clapper_sse_dropped_total")

    private struct State {
        var nextID = 0
        var byJob: [String: [Int: any EventTarget]] = [:]
        var byUser: [String: [Int: any EventTarget]] = [:]
        /// The targets the shared tick looks at (streams drained by a task).
        var sinks: [Int: EventSink] = [:]
        var count = 0
        /// The newest change id seen on the channel: catch-up after a gap starts just before it.
        var lastSeen: StreamID?
        var lastSeenJob = ""
        var stopped = false
        var subscribed = false
        /// Subscriptions (one per shard channel) in place at least once.
        var subscriptionsUp = 0
        var catchUps = 0
        /// The shortest heartbeat interval of the sinks subscribed so far (the shared tick's pace).
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

    init(redis: RedisClient, subscriberConfiguration: RedisConfiguration, keys: JobKeys, bufferSize: Int = 256, tracer: ClapperTracer = .off, links: MediaLinks = .off, cache: JobCache? = nil, logger: Logger) {
        self.redis = redis
        self.cache = cache
        self.tracer = tracer
        self.links = links
        self.keys = keys
        // A lost subscription may mean Redis lost writes (a restart, a failover): the cached jobs go
        // at once, before the instance's next write can pass a compare-and-set against a version that
        // Redis reached again with other content. (Every `.resubscribed` follows such a loss; what is
        // cached meanwhile comes from this instance's own reads and writes of the Redis now serving.)
        self.subscribers = keys.allShards.map { shard in
            let channel = keys.channel(shard: shard)
            guard keys.isSharded else {
                return RedisSubscriber(configuration: subscriberConfiguration, channels: [channel], onLost: { cache?.removeAll() }, logger: logger)
            }
            return RedisSubscriber(
                configuration: subscriberConfiguration,
                channels: [channel],
                sharded: true,
                node: { redis.nodeURL(forKey: channel) },
                onLost: {
                    redis.topologyMayHaveChanged()
                    cache?.removeAll()
                },
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

    /// How often the shared heartbeat tick looks for idle sinks: a quarter of the shortest
    /// heartbeat interval of the sinks subscribed (within these bounds), so a heartbeat goes out between one
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
            let floor = state.lastSeen.map { EventSubscription.Floor(jobID: state.lastSeenJob, id: $0) }
            guard !state.stopped else { return (target, floor, nil) }
            if let jobID = target.jobID { state.byJob[jobID, default: [:]][target.id] = target }
            if let userID = target.userID { state.byUser[userID, default: [:]][target.id] = target }
            if let sink = target as? EventSink {
                state.sinks[target.id] = sink
                state.shortestHeartbeat = min(state.shortestHeartbeat ?? sink.heartbeatInterval, sink.heartbeatInterval)
            }
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
            state.sinks[sink.id] = nil
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
        if !tracer.isOn {
            // Each message is handed out on its subscription's own thread: no task wakes up for
            // it, and it makes one hop, to its streams' loops. A gap (`.subscribed`,
            // `.resubscribed`) is caught up on that thread before the messages after it, which
            // wait in the socket meanwhile: a stream never gets a later change before the ones
            // it missed (it skips changes older than one it has). With tracing on, the consumer
            // tasks below do all of it, with a span per change handed out.
            for subscriber in subscribers {
                subscriber.onEvent { [weak self] event in
                    guard let self else { return }
                    guard case .message(_, let payload) = event else {
                        // Blocks the subscription's own thread (never a loop or the cooperative
                        // pool) until the catch-up is handed out.
                        let done = DispatchSemaphore(value: 0)
                        Task {
                            await handle(event)
                            done.signal()
                        }
                        done.wait()
                        return
                    }
                    guard let (change, targets) = take(payload) else { return }
                    deliver(change, to: targets)
                }
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

    /// Handles every event of one subscription that `run` did not hand to its thread.
    private func consumeEvents(of subscriber: RedisSubscriber) async {
        for await event in subscriber.events { await handle(event) }
    }

    /// Hands out a message's change; catches up after a gap.
    private func handle(_ event: RedisSubscriber.Event) async {
        switch event {
        case .message(_, let payload):
            guard let (change, targets) = take(payload) else { return }
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

    /// Reads one message of the events channel: the change and this instance's streams for it, or
    /// nil when no stream here wants it (most changes on a given instance: noted as seen, no view
    /// parsed, no frame made) or the message is unreadable.
    private func take(_ payload: [UInt8]) -> (JobChange, LoopBuckets)? {
        guard let envelope = JobChange.Envelope(message: payload) else {
            logger.warning("unreadable message on the events channel", metadata: ["bytes": "\(payload.count)"])
            return nil
        }
        Self.recordLag(ofChangeAt: envelope.id)
        if let cache, let version = envelope.version {
            if let doc = envelope.doc {
                cache.put(JobCache.Published(jobID: envelope.jobID, version: version, doc: doc, view: envelope.view))
            } else {
                cache.remove(envelope.jobID, upTo: version)
            }
        }
        let targets = noteSeen(jobID: envelope.jobID, userID: envelope.userID, id: envelope.id)
        guard targets.count > 0 else { return nil }
        return (JobChange(envelope, presign: links), targets)
    }

    /// The shared heartbeat tick for the `EventSink`s, until cancelled.
    private func tickHeartbeats() async {
        while true {
            let shortest = state.withLock { $0.shortestHeartbeat } ?? Self.heartbeatResolution.upperBound
            do {
                try await Task.sleep(for: min(max(shortest / 4, Self.heartbeatResolution.lowerBound), Self.heartbeatResolution.upperBound))
            } catch {
                return
            }
            let sinks = state.withLock { Array($0.sinks.values) }
            let now = ContinuousClock.now
            for sink in sinks { sink.heartbeat(now: now) }
        }
    }

    /// `loop`'s heartbeat schedule (made on first use). On `loop`.
    func heartbeats(on loop: any EventLoop) -> HeartbeatSchedule {
        let key = ObjectIdentifier(loop)
        let bound = schedules.withLock { schedules in
            if let found = schedules[key] { return found }
            let made = NIOLoopBound(HeartbeatSchedule(loop: loop), eventLoop: loop)
            schedules[key] = made
            return made
        }
        return bound.value
    }

    /// Ends every subscriber as `.shutdown` and takes no more.
    private func endAll() {
        let sinks = state.withLock { state -> [any EventTarget] in
            state.stopped = true
            let all = state.byJob.values.flatMap(\.values) + state.byUser.values.flatMap(\.values)
            state.byJob = [:]
            state.byUser = [:]
            state.sinks = [:]
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
            return Self.targets(jobID: jobID, userID: userID, in: state)
        }
    }

    private static func targets(jobID: String, userID: String?, in state: State) -> LoopBuckets {
        var targets = LoopBuckets()
        if let job = state.byJob[jobID] { targets.add(job.values) }
        if let userID, let users = state.byUser[userID] { targets.add(users.values) }
        return targets
    }

    /// A change this instance just stored (`JobStore.onWritten`), handed to its own streams at
    /// once, on the thread that got Redis's reply, as nchan hands a publish to its subscribers in
    /// process: a stream on that loop is written in the same turn, one on another loop is one hop
    /// away, and neither waits for the publish to come back through the subscription's socket and
    /// thread. A stream takes it only as the next version of the job after the last it sent
    /// (`StreamPump`); otherwise (a change of another writer still on its way) it waits for the
    /// channel, so no change is skipped. The published copy still comes and is handed out as
    /// before; a stream that took the local one drops it as already sent (by stream id per job).
    /// Instances that did not write it get only that copy. The last-seen point (where a catch-up
    /// after a gap starts) stays the channel's: only what came through it was surely seen in order.
    func deliverWritten(_ written: JobStore.Written) {
        guard let id = StreamID(written.streamID) else { return }
        let targets = state.withLock { Self.targets(jobID: written.jobID, userID: written.userID, in: $0) }
        guard targets.count > 0 else { return }
        deliver(JobChange(jobID: written.jobID, userID: written.userID, id: id, view: links.presigned(written.view), isLocal: true), to: targets)
    }

    /// Hands one change to the subscribers of its job and of its owner; returns how many.
    @discardableResult
    func dispatch(_ change: JobChange, toUsers: Bool = true) -> Int {
        deliver(change, to: noteSeen(jobID: change.jobID, userID: toUsers ? change.userID : nil, id: change.id))
    }

    /// Hands `change` to `targets`: each channel stream through its loop's `LoopDelivery`, each
    /// sink at once; a sink that fell behind is dropped.
    @discardableResult
    private func deliver(_ change: JobChange, to targets: LoopBuckets) -> Int {
        for sink in targets.sinks where !sink.deliver(change) {
            remove(sink)
            Self.droppedCounter.increment()
            logger.info("event stream fell behind and was dropped", metadata: ["job": "\(sink.jobID ?? "-")"])
        }
        // With more than one loop, each loop other than the caller's writes its own copy of the
        // change's bytes (`LoopDelivery`).
        let copy = targets.loops.count > 1
        for (loop, streams) in targets.loops {
            delivery(on: loop).deliver(change, to: streams, copy: copy && !loop.inEventLoop)
        }
        return targets.count
    }

    /// `loop`'s delivery queue (made on first use).
    private func delivery(on loop: any EventLoop) -> LoopDelivery {
        let key = ObjectIdentifier(loop)
        return deliveries.withLock { deliveries in
            if let found = deliveries[key] { return found }
            let made = LoopDelivery(loop: loop)
            deliveries[key] = made
            return made
        }
    }

    /// Targets sorted by kind, and channel streams by the event loop they are written on (most of
    /// the time the server's two).
    struct LoopBuckets {
        var sinks: [EventSink] = []
        var loops: [(loop: any EventLoop, streams: [ChannelStream])] = []

        var count: Int { loops.reduce(sinks.count) { $0 + $1.streams.count } }

        mutating func add(_ targets: some Collection<any EventTarget>) {
            for target in targets {
                guard let stream = target as? ChannelStream else {
                    if let sink = target as? EventSink { sinks.append(sink) }
                    continue
                }
                let loop = stream.loop
                if let index = loops.firstIndex(where: { $0.loop === loop }) {
                    loops[index].streams.append(stream)
                } else {
                    var bucket: [ChannelStream] = []
                    bucket.reserveCapacity(targets.count)
                    bucket.append(stream)
                    loops.append((loop, bucket))
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
