import Hummingbird
import Metrics
import Prometheus

/// The process-wide Prometheus registry. swift-metrics takes one backend per process, so the
/// first application built bootstraps it and every later one (tests build many) shares it.
enum ClapperMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = histogramBuckets
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Bucket upper bounds per latency histogram, chosen for the range each one lives in (README,
    /// "Metrics"): a Redis round trip on loopback is ~0.1-1 ms, an HTTP answer or a webhook ~1-50 ms,
    /// a fal call 10 ms-60 s, a reconcile check (a fal status, maybe a result) 1 ms-30 s. Each has
    /// `+Inf` too.
    static let histogramBuckets: [String: [Duration]] = [
        "http.server.request.duration": milliseconds([0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]),
        "clapper_webhook_duration_seconds": milliseconds([0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000]),
        "clapper_redis_duration_seconds": milliseconds([0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000]),
        "clapper_fal_request_duration_seconds": milliseconds([10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]),
        "clapper_event_delivery_lag_seconds": milliseconds([0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000]),
        "clapper_reconcile_check_duration_seconds": milliseconds([1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]),
    ]

    private static func milliseconds(_ values: [Double]) -> [Duration] {
        values.map { .nanoseconds(Int64($0 * 1_000_000)) }
    }

    static func addRoutes(to group: RouterGroup<ClapperRequestContext>) {
        group.get("metrics") { _, _ in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16 * 1024)
            registry.emit(into: &buffer)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer))
            )
        }
    }
}
