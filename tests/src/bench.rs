//! What the benchmarks share: which workloads run, their sizes from the environment, and their
//! statistics.

use std::time::Duration;

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
