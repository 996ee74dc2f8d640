//! What the benchmarks share: which workloads run, their sizes from the environment, their
//! statistics, and the steady writer of the latency benchmarks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use es_core::{AppendOptions, EventStore};
use es_diesel::{AggregateTable, Database, DieselStore};

use crate::domain::{Task, TitleUpdated};

/// Whether workload `id` runs: all of them unless `BENCH_ONLY` lists some (`P1,P3`).
pub fn selected(id: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| {
        only.split(',')
            .any(|wanted| wanted.trim().eq_ignore_ascii_case(id))
    })
}

/// The number in environment variable `name`, or `default` when it is unset or not a number:
/// the sizes of benchmarks and long tests (`BENCH_FEED_EVENTS`, `ES_TESTS_RELAY_EVENTS`).
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The median of runs' rates.
pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// The nearest-rank percentile `fraction` (0.5, 0.99, 1.0) of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], fraction: f64) -> f64 {
    let rank = (sorted.len() as f64 * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// Appends one event to task 0 every 2 ms (500 commands/s), `commands` times: each event's id
/// with when its command returned (its commit), and the rate reached.
pub fn write_every_2_ms<C: Database>(
    store: &mut DieselStore<'_, C>,
    commands: usize,
) -> (Vec<(i64, Instant)>, f64)
where
    Task: AggregateTable<C>,
{
    let start = Instant::now();
    let mut committed = Vec::with_capacity(commands);
    for n in 0..commands {
        let due = start + Duration::from_millis(2 * n as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let title = format!("tail {n}");
        let appended = store
            .append(&0, TitleUpdated { title }, &AppendOptions::default())
            .expect("a command");
        committed.push((appended.events[0].id, Instant::now()));
    }
    (committed, commands as f64 / start.elapsed().as_secs_f64())
}

/// `p50 … ms   p99 … ms   max … ms` of the times from each commit to when its event was `seen`
/// (every one must have been).
pub fn latency_summary(committed: &[(i64, Instant)], seen: &HashMap<i64, Instant>) -> String {
    let mut latencies: Vec<Duration> = committed
        .iter()
        .filter_map(|(id, at)| Some(seen.get(id)?.saturating_duration_since(*at)))
        .collect();
    assert_eq!(latencies.len(), committed.len(), "every event was seen");
    latencies.sort();
    format!(
        "p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0)
    )
}
