import Metrics
import Prometheus
import Synchronization

/// One Prometheus registry per process, served by `GET /metrics`. Tessera's own metrics name this
/// factory explicitly, so they land in the registry whatever order things start in; the global
/// swift-metrics system is bootstrapped with it too, once, for Hummingbird's request metrics.
public enum TesseraMetrics {
    public static let registry = PrometheusCollectorRegistry()
    public static let factory = PrometheusMetricsFactory(registry: registry)

    private static let bootstrapped = Mutex(false)

    /// Points swift-metrics at ``registry`` (idempotent; tests build many applications).
    public static func bootstrap() {
        bootstrapped.withLock { done in
            guard !done else { return }
            MetricsSystem.bootstrap(factory)
            done = true
        }
    }

    public static func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Metrics.Counter {
        Metrics.Counter(label: label, dimensions: dimensions, factory: factory)
    }

    public static func gauge(_ label: String) -> Metrics.Gauge { Metrics.Gauge(label: label, factory: factory) }

    public static func meter(_ label: String) -> Metrics.Meter { Metrics.Meter(label: label, factory: factory) }
}
