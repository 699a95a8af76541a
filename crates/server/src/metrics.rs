//! Prometheus metrics at `GET /metrics`: calls by method, transport and code, call latency,
//! operations running, database connections, blob bytes in and out.
//!
//! Labels take only values from fixed sets (the schema's methods, the gRPC codes), whatever a
//! client sends, so that no caller can grow the number of series.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use yc_operations::OperationRunner;
use yc_sql::Db;

/// `[(method, …), (transport, …), (code, …)]`.
type CallLabels = [(&'static str, &'static str); 3];
/// `[(method, …), (transport, …)]`.
type LatencyLabels = [(&'static str, &'static str); 2];
type LatencyFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: LatencyFamily,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    /// Metrics of a server with this runner and database.
    pub(crate) fn new(runner: OperationRunner, db: Db) -> Arc<Self> {
        let mut registry = Registry::with_prefix("yc_images");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Calls answered, by method, transport (grpc, rest, http) and gRPC code",
            calls.clone(),
        );
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "call_duration_seconds",
            "Time from a call's request to the end of its answer",
            latency.clone(),
        );
        registry.register_collector(Box::new(Live { runner, db }));
        Arc::new(Self {
            registry,
            calls,
            latency,
        })
    }

    /// Counts one call.
    pub(crate) fn record(
        &self,
        method: &'static str,
        transport: &'static str,
        code: tonic::Code,
        elapsed: Duration,
    ) {
        self.calls
            .get_or_create(&[
                ("method", method),
                ("transport", transport),
                ("code", yc_proto_types::code_name(code)),
            ])
            .inc();
        self.latency
            .get_or_create(&[("method", method), ("transport", transport)])
            .observe(elapsed.as_secs_f64());
    }

    /// The metrics in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// What is read at each scrape.
struct Live {
    runner: OperationRunner,
    db: Db,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let running = ConstGauge::new(i64::try_from(self.runner.running_count()).unwrap_or(0));
        running.encode(encoder.encode_descriptor(
            "operations_running",
            "Operations whose work runs in this process",
            None,
            running.metric_type(),
        )?)?;

        let pool = self.db.pool_use();
        let mut connections = encoder.encode_descriptor(
            "db_connections",
            "Database connections of the pool, by state",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (state, value) in [
            ("in_use", pool.in_use),
            ("idle", pool.open.saturating_sub(pool.in_use)),
        ] {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(0));
            gauge.encode(connections.encode_family(&[("state", state)])?)?;
        }

        let (written, read) = yc_registry_image::blobs::blob_bytes();
        let mut bytes = encoder.encode_descriptor(
            "blob_bytes",
            "Registry blob bytes stored (in) and read (out)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (direction, value) in [("in", written), ("out", read)] {
            ConstCounter::new(value).encode(bytes.encode_family(&[("direction", direction)])?)?;
        }
        Ok(())
    }
}

/// The method label of a gRPC call to `path`: the path itself for a method the server knows,
/// else `unknown`.
pub(crate) fn grpc_method(path: &str) -> &'static str {
    static KNOWN: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let pool = yc_proto_types::descriptor_pool();
        let mut known: HashSet<&'static str> = pool
            .services()
            .flat_map(|service| {
                let name = service.full_name().to_owned();
                service
                    .methods()
                    .map(move |m| format!("/{name}/{}", m.name()))
                    .collect::<Vec<_>>()
            })
            .map(|path| &*Box::leak(path.into_boxed_str()))
            .collect();
        known.extend([
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]);
        known
    });
    known.get(path).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_become_labels() {
        assert_eq!(
            grpc_method("/yandex.cloud.compute.v1.ImageService/Get"),
            "/yandex.cloud.compute.v1.ImageService/Get"
        );
        assert_eq!(
            grpc_method("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            grpc_method("/yandex.cloud.compute.v1.ImageService/Nope"),
            "unknown"
        );
        assert_eq!(grpc_method(&"x".repeat(10_000)), "unknown");
    }
}
