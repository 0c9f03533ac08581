import Hummingbird
import Metrics
import Prometheus

/// The process-wide Prometheus registry. swift-metrics takes one backend per process, so the
/// first application built bootstraps it and every later one (tests build many) shares it.
enum ClapperMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

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
