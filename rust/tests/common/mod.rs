//! Loader of the recorded Binance L2 streams in `shared/data/book/binance_btc_20240808`
//! (shared by `rust/tests/real_data.rs` and `rust/benches/book_ingest.rs`).
//!
//! `*_book.csv.gz` columns: `local_ns,exch_ms,msg_seq,is_snapshot,side,price,qty,
//! first_update_id,last_update_id,prev_update_id`; the rows of one `msg_seq` form one message;
//! `msg_seq` 1 with `is_snapshot = 1` is the REST snapshot (id = `last_update_id`); quantities are
//! absolute (0 deletes); `prev_update_id` is empty for spot.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use cexarb::book::L2Delta;
use flate2::read::GzDecoder;

/// Folder name of the recording under `shared/data/book/`.
pub const RECORDING: &str = "binance_btc_20240808";

/// One instrument's messages, ready to apply.
pub struct Stream {
    pub name: String,
    pub tick_size: f64,
    pub lot_size: f64,
    pub deltas: Vec<L2Delta>,
    pub level_rows: usize,
}

/// The recording folder: `$CEXARB_DATA` (the data root, its `book/` folder or the recording
/// folder itself), else `CARGO_MANIFEST_DIR/../shared/data/book/binance_btc_20240808`.
/// `None` when absent.
pub fn data_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(root) = std::env::var("CEXARB_DATA") {
        let root = PathBuf::from(root);
        candidates.push(root.join("book").join(RECORDING));
        candidates.push(root.join(RECORDING));
        candidates.push(root);
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/book").join(RECORDING),
    );
    candidates.into_iter().find(|dir| !book_files(dir).is_empty())
}

/// `*_book.csv.gz` files of `dir`, sorted by name.
pub fn book_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_book.csv.gz")))
        .collect();
    files.sort();
    files
}

/// Tick and lot size by file-name prefix (Binance exchangeInfo, 2024-08).
pub fn instrument(file_name: &str) -> Option<(f64, f64)> {
    if file_name.starts_with("binance-spot_BTCUSDT") {
        Some((0.01, 0.00001))
    } else if file_name.starts_with("binance-usdm_BTCUSDT") {
        Some((0.1, 0.001))
    } else if file_name.starts_with("binance-coinm_BTCUSD_PERP") {
        Some((0.1, 1.0))
    } else {
        None
    }
}

fn parse_id(field: &str) -> Result<Option<u64>, String> {
    if field.is_empty() {
        Ok(None)
    } else {
        field.parse::<u64>().map(Some).map_err(|e| format!("id {field:?}: {e}"))
    }
}

struct Pending {
    seq: u64,
    is_snapshot: bool,
    bids: Vec<(f64, f64)>,
    asks: Vec<(f64, f64)>,
    first: Option<u64>,
    last: u64,
    prev: Option<u64>,
}

impl Pending {
    fn finish(self) -> Result<L2Delta, String> {
        let first = self.first.unwrap_or(self.last);
        L2Delta::new(self.bids, self.asks, first, self.last, self.prev, self.is_snapshot)
            .map_err(|e| format!("msg_seq {}: {e}", self.seq))
    }
}

/// Reads one `*_book.csv.gz` into messages.
pub fn load_stream(path: &Path) -> Result<Stream, String> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let (tick_size, lot_size) =
        instrument(&file_name).ok_or_else(|| format!("unknown instrument {file_name}"))?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = BufReader::with_capacity(1 << 20, GzDecoder::new(file));
    let mut deltas = Vec::new();
    let mut pending: Option<Pending> = None;
    let mut level_rows = 0usize;
    for (line_no, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("{file_name} line {}: {e}", line_no + 1))?;
        if line_no == 0 {
            if !line.starts_with("local_ns,") {
                return Err(format!("{file_name}: unexpected header {line:?}"));
            }
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let [_, _, seq, is_snapshot, side, price, qty, first, last, prev] = cols[..] else {
            return Err(format!("{file_name} line {}: {} columns", line_no + 1, cols.len()));
        };
        let bad = |what: &str| format!("{file_name} line {}: bad {what} in {line:?}", line_no + 1);
        let seq: u64 = seq.parse().map_err(|_| bad("msg_seq"))?;
        let price: f64 = price.parse().map_err(|_| bad("price"))?;
        let qty: f64 = qty.parse().map_err(|_| bad("qty"))?;
        let last = parse_id(last)?.ok_or_else(|| bad("last_update_id"))?;
        if pending.as_ref().is_some_and(|p| p.seq != seq) {
            if let Some(done) = pending.take() {
                deltas.push(done.finish()?);
            }
        }
        let msg = match pending.as_mut() {
            Some(msg) => msg,
            None => pending.insert(Pending {
                seq,
                is_snapshot: is_snapshot == "1",
                bids: Vec::new(),
                asks: Vec::new(),
                first: parse_id(first)?,
                last,
                prev: parse_id(prev)?,
            }),
        };
        match side {
            "bid" => msg.bids.push((price, qty)),
            "ask" => msg.asks.push((price, qty)),
            _ => return Err(bad("side")),
        }
        level_rows += 1;
    }
    if let Some(done) = pending.take() {
        deltas.push(done.finish()?);
    }
    let name = file_name.trim_end_matches("_book.csv.gz").to_owned();
    Ok(Stream { name, tick_size, lot_size, deltas, level_rows })
}

/// All streams of the recording, or `None` when the data is absent.
pub fn load_all() -> Option<Result<Vec<Stream>, String>> {
    let dir = data_dir()?;
    Some(book_files(&dir).iter().map(|p| load_stream(p)).collect())
}
