import Metrics
import Synchronization

/// Commands in flight and callers waiting for a connection, over every node a client talks to,
/// kept as the `clapper_redis_pool_in_use` and `clapper_redis_pool_waiters` gauges.
final class RedisPoolCounters: Sendable {
    private let inFlight = Atomic<Int>(0)
    private let waiting = Atomic<Int>(0)
    private let inUseGauge = Gauge(label: "clapper_redis_pool_in_use")
    private let waitersGauge = Gauge(label: "clapper_redis_pool_waiters")

    func startCommand() { inUseGauge.record(inFlight.wrappingAdd(1, ordering: .relaxed).newValue) }
    func endCommand() { inUseGauge.record(inFlight.wrappingSubtract(1, ordering: .relaxed).newValue) }
    func startWaiting() { waitersGauge.record(waiting.wrappingAdd(1, ordering: .relaxed).newValue) }
    func endWaiting() { waitersGauge.record(waiting.wrappingSubtract(1, ordering: .relaxed).newValue) }

    var status: (inUse: Int, waiting: Int) {
        (inFlight.load(ordering: .relaxed), waiting.load(ordering: .relaxed))
    }
}
