//! Prometheus metrics at `GET /metrics`: calls by method, transport and code, call latency,
//! operations running, database connections, blob bytes in and out.
//!
//! Labels take only values from fixed sets (the schema's methods, the gRPC codes), whatever a
//! client sends, so that no caller can grow the number of series.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Tells this instance's handles apart in each thread's [`HANDLES`].
    instance: u64,
}

/// A call's series: `(instance, method, transport, code)`, the label texts by address.
type HandleKey = (u64, usize, usize, i32);

thread_local! {
    /// The series each serving thread has counted calls in, found by the addresses of their
    /// `'static` label texts: a call counts itself without hashing its labels' text or taking
    /// the families' locks. Texts at different addresses that read the same still count in
    /// one series, found through the family the first time.
    static HANDLES: std::cell::RefCell<HashMap<HandleKey, (Counter, Histogram), KeyHasher>> =
        std::cell::RefCell::new(HashMap::default());
}

/// Hashes a [`HandleKey`] (four words, no attacker's input) by multiplying and rotating.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n.cast_unsigned()));
    }
}

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = Self;
    fn build_hasher(&self) -> Self {
        Self(0)
    }
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
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Arc::new(Self {
            registry,
            calls,
            latency,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
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
        let key = (
            self.instance,
            method.as_ptr() as usize,
            transport.as_ptr() as usize,
            code as i32,
        );
        HANDLES.with_borrow_mut(|handles| {
            let (calls, latency) = handles.entry(key).or_insert_with(|| {
                (
                    self.calls
                        .get_or_create(&[
                            ("method", method),
                            ("transport", transport),
                            ("code", yc_proto_types::code_name(code)),
                        ])
                        .clone(),
                    self.latency
                        .get_or_create(&[("method", method), ("transport", transport)])
                        .clone(),
                )
            });
            calls.inc();
            latency.observe(elapsed.as_secs_f64());
        });
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

    /// The line of `text` that starts with `series`, its value.
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .map(|rest| rest.trim().to_owned())
    }

    #[tokio::test]
    async fn calls_count_in_one_series_per_label_text_and_per_server() {
        let runner = || OperationRunner::new(Arc::new(yc_operations::MemoryOperationStore::new()));
        let db = yc_sql::Db::sqlite_memory().await.unwrap();
        let (one, other) = (
            Metrics::new(runner(), db.clone()),
            Metrics::new(runner(), db),
        );
        // The same text at two addresses, as a method's label comes from the schema or from
        // the REST transcoder.
        let leaked: &'static str = Box::leak(String::from("/a.B/Get").into_boxed_str());
        one.record(
            "/a.B/Get",
            "grpc",
            tonic::Code::Ok,
            Duration::from_millis(1),
        );
        one.record(leaked, "grpc", tonic::Code::Ok, Duration::from_millis(3));
        one.record(
            leaked,
            "grpc",
            tonic::Code::NotFound,
            Duration::from_millis(1),
        );
        other.record(
            "/a.B/Get",
            "grpc",
            tonic::Code::Ok,
            Duration::from_millis(1),
        );
        // Another thread, the same series.
        let sent = one.clone();
        std::thread::spawn(move || {
            sent.record(leaked, "grpc", tonic::Code::Ok, Duration::from_millis(1));
        })
        .join()
        .unwrap();

        let text = one.render();
        let ok = r#"yc_images_calls_total{method="/a.B/Get",transport="grpc",code="OK"}"#;
        let not_found =
            r#"yc_images_calls_total{method="/a.B/Get",transport="grpc",code="NOT_FOUND"}"#;
        assert_eq!(value(&text, ok).as_deref(), Some("3"), "{text}");
        assert_eq!(value(&text, not_found).as_deref(), Some("1"), "{text}");
        assert_eq!(text.matches(ok).count(), 1, "{text}");
        let count = r#"yc_images_call_duration_seconds_count{method="/a.B/Get",transport="grpc"}"#;
        assert_eq!(value(&text, count).as_deref(), Some("4"), "{text}");
        let other = other.render();
        assert_eq!(value(&other, ok).as_deref(), Some("1"), "{other}");
    }
}
