//! Native baseline of book ingestion: the recorded Binance BTC depth streams (spot, USDⓈ-M,
//! COIN-M; 2024-08-08), all messages built in advance, applied to fresh books with a best
//! bid/ask read after each message, repeated; prints the median and writes
//! `target/book_ingest_native.json`.
//!
//! A second, separate pass times every message on its own (`apply_delta` + best bid/ask read,
//! one `Instant` pair per message, so each sample carries ~30 ns of clock overhead; the deep rows
//! a big message leaves pending are flushed after the sample, see "Top first" in `book.rs`) and prints
//! the per-message latency distribution (p50, p90, p99, p99.9, max) pooled over all three
//! streams and `BENCH_LATENCY_REPEATS` (default 5) replays, plus each stream's p99 and max.
//!
//! Run: `cargo bench --bench book_ingest` (std::time only, no harness). Env `BENCH_REPEATS`
//! overrides the 20 repeats.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use cexarb::book::{ApplyOutcome, OrderBook};

fn main() {
    let streams = match common::load_all() {
        None => {
            eprintln!("book_ingest: shared/data/book/{} not found; nothing to run", common::RECORDING);
            return;
        }
        Some(Ok(streams)) => streams,
        Some(Err(e)) => {
            eprintln!("book_ingest: loading the recording failed: {e}");
            std::process::exit(1);
        }
    };
    let repeats: usize =
        std::env::var("BENCH_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(20).max(1);
    let messages: usize = streams.iter().map(|s| s.deltas.len()).sum();
    let level_rows: usize = streams.iter().map(|s| s.level_rows).sum();

    let mut totals_ns: Vec<f64> = Vec::with_capacity(repeats);
    let mut per_stream_ns: Vec<Vec<f64>> = vec![Vec::with_capacity(repeats); streams.len()];
    for _ in 0..repeats {
        let mut total = 0.0;
        for (i, stream) in streams.iter().enumerate() {
            let mut book = match OrderBook::new(stream.tick_size, stream.lot_size) {
                Ok(book) => book,
                Err(e) => {
                    eprintln!("{}: {e}", stream.name);
                    std::process::exit(1);
                }
            };
            let mut gaps = 0usize;
            let start = Instant::now();
            for delta in &stream.deltas {
                match book.apply_delta(black_box(delta)) {
                    Ok(ApplyOutcome::Gap) => gaps += 1,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("{}: {e}", stream.name);
                        std::process::exit(1);
                    }
                }
                black_box((book.best_bid(), book.best_ask()));
            }
            let elapsed = start.elapsed().as_nanos() as f64;
            if gaps != 0 {
                eprintln!("{}: {gaps} gaps", stream.name);
                std::process::exit(1);
            }
            if let Some(v) = per_stream_ns.get_mut(i) {
                v.push(elapsed);
            }
            total += elapsed;
        }
        totals_ns.push(total);
    }

    // per-message latency pass (kept apart so the clock reads do not perturb the totals above)
    let latency_repeats: usize = std::env::var("BENCH_LATENCY_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut all_latency_ns: Vec<u64> = Vec::with_capacity(messages * latency_repeats);
    let mut stream_latency_ns: Vec<Vec<u64>> = vec![Vec::new(); streams.len()];
    for _ in 0..latency_repeats {
        for (i, stream) in streams.iter().enumerate() {
            let mut book = match OrderBook::new(stream.tick_size, stream.lot_size) {
                Ok(book) => book,
                Err(e) => {
                    eprintln!("{}: {e}", stream.name);
                    std::process::exit(1);
                }
            };
            let Some(samples) = stream_latency_ns.get_mut(i) else { continue };
            for delta in &stream.deltas {
                let start = Instant::now();
                let outcome = book.apply_delta(black_box(delta));
                black_box((book.best_bid(), book.best_ask()));
                let elapsed = start.elapsed().as_nanos() as u64;
                if let Err(e) = outcome {
                    eprintln!("{}: {e}", stream.name);
                    std::process::exit(1);
                }
                samples.push(elapsed);
                // the deep rows left pending go in now, after the sample (as a driver does once
                // its strategies have seen the message); the totals above include them
                black_box(book.flush());
            }
        }
    }
    for samples in &stream_latency_ns {
        all_latency_ns.extend_from_slice(samples);
    }
    let all_latency = Percentiles::of(&mut all_latency_ns);
    let stream_latency: Vec<Percentiles> =
        stream_latency_ns.iter_mut().map(|v| Percentiles::of(v)).collect();

    let median_ns = median(&mut totals_ns);
    let ns_per_message = median_ns / messages as f64;
    let messages_per_s = messages as f64 / (median_ns / 1e9);
    println!(
        "book_ingest (native Rust loop): {} streams, {messages} messages, {level_rows} level rows, {repeats} repeats",
        streams.len()
    );
    let mut stream_json = Vec::new();
    for ((stream, times), lat) in streams.iter().zip(per_stream_ns.iter_mut()).zip(&stream_latency) {
        let m = median(times);
        println!(
            "  {:<40} {:>7} msgs  median {:>8.3} ms  {:>7.1} ns/msg  p99 {:>6} ns  max {:>7} ns",
            stream.name,
            stream.deltas.len(),
            m / 1e6,
            m / stream.deltas.len() as f64,
            lat.p99,
            lat.max
        );
        stream_json.push(format!(
            "{{\"name\": \"{}\", \"messages\": {}, \"level_rows\": {}, \"median_ms\": {:.4}, \"ns_per_message\": {:.2}, \"latency_ns\": {}}}",
            stream.name,
            stream.deltas.len(),
            stream.level_rows,
            m / 1e6,
            m / stream.deltas.len() as f64,
            lat.json()
        ));
    }
    println!(
        "  total: median {:.3} ms, {:.1} ns/message, {:.0} messages/s",
        median_ns / 1e6,
        ns_per_message,
        messages_per_s
    );
    println!(
        "  per-message latency (apply_delta + best bid/ask, {} samples over {latency_repeats} replays): \
         p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns, mean {:.1} ns",
        all_latency.count,
        all_latency.p50,
        all_latency.p90,
        all_latency.p99,
        all_latency.p999,
        all_latency.max,
        all_latency.mean
    );

    let json = format!(
        "{{\n  \"benchmark\": \"book_ingest_native\",\n  \"messages\": {messages},\n  \"level_rows\": {level_rows},\n  \"repeats\": {repeats},\n  \"median_total_ms\": {:.4},\n  \"ns_per_message\": {:.2},\n  \"messages_per_s\": {:.0},\n  \"latency_repeats\": {latency_repeats},\n  \"latency_ns\": {},\n  \"streams\": [{}]\n}}\n",
        median_ns / 1e6,
        ns_per_message,
        messages_per_s,
        all_latency.json(),
        stream_json.join(", ")
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out = target.join("book_ingest_native.json");
    match std::fs::create_dir_all(&target).and_then(|_| std::fs::write(&out, json)) {
        Ok(()) => println!("  wrote {}", out.display()),
        Err(e) => eprintln!("  could not write {}: {e}", out.display()),
    }
}

/// Per-message latency summary in ns (nearest-rank percentiles).
struct Percentiles {
    count: usize,
    mean: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Percentiles {
    fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let count = samples.len();
        let rank = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let index = ((q * count as f64).ceil() as usize).clamp(1, count) - 1;
            samples.get(index).copied().unwrap_or(0)
        };
        let mean = if count == 0 {
            f64::NAN
        } else {
            samples.iter().map(|&v| v as f64).sum::<f64>() / count as f64
        };
        Self {
            count,
            mean,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            p999: rank(0.999),
            max: samples.last().copied().unwrap_or(0),
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"samples\": {}, \"mean\": {:.1}, \"p50\": {}, \"p90\": {}, \"p99\": {}, \"p99_9\": {}, \"max\": {}}}",
            self.count, self.mean, self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
