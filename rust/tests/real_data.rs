//! Replays the recorded Binance BTC depth streams (spot, USDⓈ-M, COIN-M; 2024-08-08) through
//! the order book: no gaps, never crossed; dropping one message must be detected as a gap.
//! Skipped (passes with a note) when `shared/data` is absent.

mod common;

use cexarb::book::{ApplyOutcome, L2Delta, OrderBook};
use common::Stream;

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    applied: usize,
    stale: usize,
    gaps: usize,
    not_synced: usize,
    crossed: usize,
}

fn replay(stream: &Stream, deltas: &[&L2Delta]) -> (OrderBook, Counts, Vec<ApplyOutcome>) {
    let mut book = OrderBook::new(stream.tick_size, stream.lot_size).expect("tick/lot");
    let mut counts = Counts::default();
    let mut outcomes = Vec::with_capacity(deltas.len());
    for (i, delta) in deltas.iter().enumerate() {
        let outcome = book
            .apply_delta(delta)
            .unwrap_or_else(|e| panic!("{} message {i}: {e}", stream.name));
        match outcome {
            ApplyOutcome::Applied => counts.applied += 1,
            ApplyOutcome::Stale => counts.stale += 1,
            ApplyOutcome::Gap => counts.gaps += 1,
            ApplyOutcome::NotSynced => counts.not_synced += 1,
            ApplyOutcome::Crossed => counts.crossed += 1,
        }
        outcomes.push(outcome);
    }
    (book, counts, outcomes)
}

fn streams() -> Option<Vec<Stream>> {
    match common::load_all() {
        None => {
            eprintln!("real_data: shared/data/book/{} not found; skipped", common::RECORDING);
            None
        }
        Some(result) => {
            let streams = result.unwrap_or_else(|e| panic!("loading the recording: {e}"));
            assert_eq!(streams.len(), 3, "expected spot, usdm and coinm streams");
            Some(streams)
        }
    }
}

#[test]
fn recorded_streams_have_no_gaps_and_never_cross() {
    let Some(streams) = streams() else { return };
    for stream in &streams {
        let deltas: Vec<&L2Delta> = stream.deltas.iter().collect();
        assert!(deltas.first().is_some_and(|d| d.is_snapshot()), "{}: snapshot first", stream.name);
        let (book, counts, _) = replay(stream, &deltas);
        eprintln!("{}: {} messages, {} level rows, {counts:?}", stream.name, deltas.len(), stream.level_rows);
        assert_eq!(counts.gaps, 0, "{}", stream.name);
        assert_eq!(counts.crossed, 0, "{}", stream.name);
        assert_eq!(counts.not_synced, 0, "{}", stream.name);
        assert!(counts.applied > 1000, "{}: {counts:?}", stream.name);
        assert!(book.is_valid(), "{}: {:?}", stream.name, book.invalid_reason());
        let (bid, ask) = (book.best_bid().expect("bid"), book.best_ask().expect("ask"));
        assert!(bid.0 < ask.0 && bid.0 > 50_000.0 && ask.0 < 70_000.0, "{}: {bid:?} {ask:?}", stream.name);
    }
}

#[test]
fn dropping_one_message_is_a_gap() {
    let Some(streams) = streams() else { return };
    for stream in &streams {
        let middle = stream.deltas.len() / 2;
        let deltas: Vec<&L2Delta> = stream
            .deltas
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != middle)
            .map(|(_, d)| d)
            .collect();
        let (book, counts, outcomes) = replay(stream, &deltas);
        assert_eq!(counts.gaps, 1, "{}: {counts:?}", stream.name);
        assert_eq!(outcomes.get(middle), Some(&ApplyOutcome::Gap), "{}", stream.name);
        assert!(outcomes[middle + 1..].iter().all(|&o| o == ApplyOutcome::NotSynced));
        assert!(!book.is_valid());
        assert_eq!(book.gap_count(), 1);
        let reason = book.invalid_reason().unwrap_or_default();
        // the reason names the book's id: the last message applied before the dropped one
        let book_id = stream.deltas[middle - 1].last_update_id();
        assert!(reason.contains(&book_id.to_string()), "{}: {reason}", stream.name);
        eprintln!("{}: dropped message {middle}: {reason}", stream.name);
    }
}
