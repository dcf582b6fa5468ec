//! L2 price-level order book keyed by integer ticks, with Binance depth-stream sequencing.
//!
//! # Storage
//! Each side is a sorted `Vec<(ticks, qty)>` with the **best level at the end**: bids ascending by
//! ticks, asks descending. Most depth changes touch the top of the book, so inserts and removals
//! shift only the few elements behind the insertion point; lookups are binary searches.
//! Ticks are `round(price / tick_size)`, computed once at the edge.
//!
//! # Sequencing
//! Binance, "How to manage a local order book correctly" (spot: Spot API docs, WebSocket Streams,
//! "Diff. Depth Stream"; USDⓈ-M / COIN-M futures: "How to manage a local order book correctly"
//! under WebSocket Market Streams). The rule set is chosen per update by whether `pu`
//! (`prev_update_id`) is given (futures) or not (spot):
//!
//! * first event after a snapshot with id `L`: spot drops it when `u <= L` and requires
//!   `U <= L + 1 <= u`; futures drop it when `u < L` and require `U <= L <= u`;
//! * later events: drop when `u <= last u`; spot requires `U == last u + 1`, futures require
//!   `pu == last u`. Anything else is a sequence gap: the book is invalid until the next snapshot.
//!
//! Level quantities are absolute; a quantity of 0 deletes the level.

use thiserror::Error;

use crate::pricing::{self, format_scaled};

/// Outcome of [`OrderBook::apply_update`]; the discriminants are the Python constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ApplyOutcome {
    /// The update was applied.
    Applied = 0,
    /// The update ended at or before the book's id (already contained); ignored.
    Stale = 1,
    /// Sequence gap: the book is now invalid until the next snapshot.
    Gap = 2,
    /// No snapshot yet, or invalid after a gap/cross; ignored.
    NotSynced = 3,
    /// Applied, but the book is now crossed (best bid >= best ask) and marked invalid.
    Crossed = 4,
}

impl ApplyOutcome {
    /// The integer code exposed to Python (`APPLIED` ... `CROSSED`).
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Book side for executions: `Buy` walks the asks, `Sell` walks the bids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// Parses `"buy"` / `"sell"`.
    pub fn parse(text: &str) -> Result<Self, BookError> {
        match text {
            "buy" => Ok(Side::Buy),
            "sell" => Ok(Side::Sell),
            other => Err(BookError::BadSide { side: other.to_owned() }),
        }
    }
}

/// One side of the book: `Bid` or `Ask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookSide {
    Bid,
    Ask,
}

impl BookSide {
    /// Parses `"bid"` / `"ask"`.
    pub fn parse(text: &str) -> Result<Self, BookError> {
        match text {
            "bid" => Ok(BookSide::Bid),
            "ask" => Ok(BookSide::Ask),
            other => Err(BookError::BadBookSide { side: other.to_owned() }),
        }
    }
}

/// Errors of the order book; each message names the field and its value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BookError {
    #[error("tick_size {tick_size} must be finite and > 0")]
    BadTickSize { tick_size: f64 },
    #[error("lot_size {lot_size} must be finite and > 0")]
    BadLotSize { lot_size: f64 },
    #[error("{field} price {price} must be finite and > 0")]
    BadPrice { field: &'static str, price: f64 },
    #[error("{field} qty {qty} at price {price} must be finite and >= 0")]
    BadQty { field: &'static str, price: f64, qty: f64 },
    #[error("{field} price {price} not a multiple of tick_size {tick_size}")]
    OffGrid { field: &'static str, price: f64, tick_size: f64 },
    #[error("{field} price {price} / tick_size {tick_size} is out of the i64 tick range")]
    TickOverflow { field: &'static str, price: f64, tick_size: f64 },
    #[error("{field} must have shape (n, 2), got {shape}")]
    BadShape { field: &'static str, shape: String },
    #[error("{field} level {index} is not a (price, qty) pair of numbers")]
    BadLevel { field: &'static str, index: usize },
    #[error("first_update_id {first} > last_update_id {last}")]
    BadIds { first: u64, last: u64 },
    #[error("side {side:?} must be \"buy\" or \"sell\"")]
    BadSide { side: String },
    #[error("side {side:?} must be \"bid\" or \"ask\"")]
    BadBookSide { side: String },
    #[error("qty {qty} must be finite and > 0")]
    BadExecQty { qty: f64 },
    #[error("price_limit {price_limit} must be finite")]
    BadPriceLimit { price_limit: f64 },
    #[error("ticks {ticks} * tick_size {tick_size} cannot be formatted: {detail}")]
    Format { ticks: i64, tick_size: f64, detail: String },
    /// The book is invalid (no snapshot, sequence gap, crossed); carries the reason.
    #[error("order book invalid: {reason}")]
    Invalid { reason: String },
}

/// Checks a level's numbers (price finite > 0, qty finite >= 0) without the tick grid.
pub fn check_level(field: &'static str, price: f64, qty: f64) -> Result<(), BookError> {
    if !(price.is_finite() && price > 0.0) {
        return Err(BookError::BadPrice { field, price });
    }
    if !(qty.is_finite() && qty >= 0.0) {
        return Err(BookError::BadQty { field, price, qty });
    }
    Ok(())
}

/// One depth message built in advance (replay, benchmarks): levels already extracted and
/// checked for finiteness and `qty >= 0`; the tick grid is checked when applied.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Delta {
    bids: Vec<(f64, f64)>,
    asks: Vec<(f64, f64)>,
    first_update_id: u64,
    last_update_id: u64,
    prev_update_id: Option<u64>,
    is_snapshot: bool,
}

impl L2Delta {
    /// Builds a message; errors on a non-finite / non-positive price or a non-finite / negative qty.
    pub fn new(
        bids: Vec<(f64, f64)>,
        asks: Vec<(f64, f64)>,
        first_update_id: u64,
        last_update_id: u64,
        prev_update_id: Option<u64>,
        is_snapshot: bool,
    ) -> Result<Self, BookError> {
        for &(price, qty) in &bids {
            check_level("bids", price, qty)?;
        }
        for &(price, qty) in &asks {
            check_level("asks", price, qty)?;
        }
        Ok(Self { bids, asks, first_update_id, last_update_id, prev_update_id, is_snapshot })
    }

    pub fn bids(&self) -> &[(f64, f64)] {
        &self.bids
    }
    pub fn asks(&self) -> &[(f64, f64)] {
        &self.asks
    }
    /// Total number of level rows (bids + asks).
    pub fn n_levels(&self) -> usize {
        self.bids.len() + self.asks.len()
    }
    pub fn first_update_id(&self) -> u64 {
        self.first_update_id
    }
    pub fn last_update_id(&self) -> u64 {
        self.last_update_id
    }
    pub fn prev_update_id(&self) -> Option<u64> {
        self.prev_update_id
    }
    pub fn is_snapshot(&self) -> bool {
        self.is_snapshot
    }
}

/// Result of walking one side of the book for a quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Average fill price; `None` when nothing could be filled.
    pub avg_price: Option<f64>,
    pub filled_qty: f64,
    /// `sum(price * qty)` over the levels walked, quote currency.
    pub notional: f64,
    /// Last (worst) level touched.
    pub worst_price: Option<f64>,
    /// `true` when the book held the whole qty.
    pub complete: bool,
    /// Number of levels touched.
    pub levels: usize,
    /// `(avg - best) / best * 1e4`, signed so that worse than best is positive.
    pub slippage_bps: Option<f64>,
}

/// Best bid and best ask as `(ticks, qty bits)`, compared to detect a BBO change.
type BboKey = (Option<(i64, u64)>, Option<(i64, u64)>);

/// Up to `n` levels of each side as `(price, qty)`, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Depth {
    pub bids: Vec<(f64, f64)>,
    pub asks: Vec<(f64, f64)>,
}

/// Absolute tolerance of the tick-grid check in ticks (plus a relative `1e-12` for large prices).
const GRID_TOLERANCE: f64 = 1e-6;

/// L2 price-level order book; see the module documentation for storage and sequencing.
#[derive(Debug, Clone)]
pub struct OrderBook {
    tick_size: f64,
    lot_size: f64,
    /// `tick_size` as an integer count of `10^-decimals` (exact price reconstruction).
    tick_units: f64,
    /// `10^decimals`, `None` if the step is not a short decimal (then `ticks * tick_size`).
    price_scale: Option<f64>,
    tick_decimals: u32,
    /// Bids ascending by ticks: best (highest) last.
    bids: Vec<(i64, f64)>,
    /// Asks descending by ticks: best (lowest) last.
    asks: Vec<(i64, f64)>,
    last_update_id: Option<u64>,
    /// A snapshot has been applied and no gap/cross happened since.
    valid: bool,
    /// No update applied since the snapshot yet (first-event straddle rule).
    awaiting_first: bool,
    crossed: bool,
    invalid_reason: Option<String>,
    gap_count: u64,
    version: u64,
    bbo_changed: bool,
    bbo_price_changed: bool,
    /// Reused buffers of the validated (ticks, qty) of the update being applied.
    scratch_bids: Vec<(i64, f64)>,
    scratch_asks: Vec<(i64, f64)>,
}

const NO_SNAPSHOT: &str = "no snapshot yet";

impl OrderBook {
    /// A book with no snapshot (invalid until [`OrderBook::apply_snapshot`]).
    ///
    /// Errors: `tick_size` or `lot_size` not finite or `<= 0`.
    pub fn new(tick_size: f64, lot_size: f64) -> Result<Self, BookError> {
        if !(tick_size.is_finite() && tick_size > 0.0) {
            return Err(BookError::BadTickSize { tick_size });
        }
        if !(lot_size.is_finite() && lot_size > 0.0) {
            return Err(BookError::BadLotSize { lot_size });
        }
        let (tick_units, price_scale, tick_decimals) = match pricing::step_units(tick_size) {
            Ok((units, decimals)) if decimals <= 15 && units < (1i128 << 40) => {
                (units as f64, Some(10f64.powi(decimals as i32)), decimals)
            }
            Ok((_, decimals)) => (tick_size, None, decimals),
            Err(_) => (tick_size, None, 0),
        };
        Ok(Self {
            tick_size,
            lot_size,
            tick_units,
            price_scale,
            tick_decimals,
            bids: Vec::with_capacity(1024),
            asks: Vec::with_capacity(1024),
            last_update_id: None,
            valid: false,
            awaiting_first: false,
            crossed: false,
            invalid_reason: Some(NO_SNAPSHOT.to_owned()),
            gap_count: 0,
            version: 0,
            bbo_changed: false,
            bbo_price_changed: false,
            scratch_bids: Vec::with_capacity(256),
            scratch_asks: Vec::with_capacity(256),
        })
    }

    pub fn tick_size(&self) -> f64 {
        self.tick_size
    }
    pub fn lot_size(&self) -> f64 {
        self.lot_size
    }
    pub fn is_valid(&self) -> bool {
        self.valid
    }
    pub fn is_crossed(&self) -> bool {
        self.crossed
    }
    /// Why the book is invalid (`None` when valid).
    pub fn invalid_reason(&self) -> Option<&str> {
        self.invalid_reason.as_deref()
    }
    /// Id of the snapshot or of the last applied update (`u`); `None` before the first snapshot.
    pub fn last_update_id(&self) -> Option<u64> {
        self.last_update_id
    }
    pub fn n_bids(&self) -> usize {
        self.bids.len()
    }
    pub fn n_asks(&self) -> usize {
        self.asks.len()
    }
    /// Number of sequence gaps seen.
    pub fn gap_count(&self) -> u64 {
        self.gap_count
    }
    /// Incremented by every applied snapshot and update.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// Whether the last snapshot/update changed the best bid or best ask (price or qty).
    pub fn bbo_changed(&self) -> bool {
        self.bbo_changed
    }
    /// Whether the last snapshot/update changed the best bid or best ask *price* (a subset of
    /// [`OrderBook::bbo_changed`]): what a strategy that reads only mids/prices watches.
    pub fn bbo_price_changed(&self) -> bool {
        self.bbo_price_changed
    }

    fn set_bbo_flags(&mut self, before: BboKey) {
        let after = self.bbo_key();
        self.bbo_changed = after != before;
        self.bbo_price_changed = after.0.map(|l| l.0) != before.0.map(|l| l.0) || after.1.map(|l| l.0) != before.1.map(|l| l.0);
    }

    fn clear_bbo_flags(&mut self) {
        self.bbo_changed = false;
        self.bbo_price_changed = false;
    }

    /// Errors with [`BookError::Invalid`] (the reason) unless the book is valid.
    pub fn require_valid(&self) -> Result<(), BookError> {
        if self.valid {
            Ok(())
        } else {
            Err(BookError::Invalid {
                reason: self.invalid_reason.clone().unwrap_or_else(|| NO_SNAPSHOT.to_owned()),
            })
        }
    }

    /// `round(price / tick_size)`; errors when the price is not finite, `<= 0`, or off the grid
    /// (`|price / tick_size - round| > 1e-6`, plus `1e-12` relative for float noise).
    #[inline]
    pub fn price_to_ticks(&self, price: f64) -> Result<i64, BookError> {
        self.ticks_of("price", price)
    }

    #[inline]
    fn ticks_of(&self, field: &'static str, price: f64) -> Result<i64, BookError> {
        if !(price.is_finite() && price > 0.0) {
            return Err(BookError::BadPrice { field, price });
        }
        let exact = price / self.tick_size;
        let rounded = exact.round();
        if (exact - rounded).abs() > GRID_TOLERANCE.max(rounded * 1e-12) || rounded < 1.0 {
            return Err(BookError::OffGrid { field, price, tick_size: self.tick_size });
        }
        if rounded >= 9.0e18 {
            return Err(BookError::TickOverflow { field, price, tick_size: self.tick_size });
        }
        Ok(rounded as i64)
    }

    /// Price of `ticks`: the nearest `f64` to the exact decimal `ticks * tick_size` (so
    /// `61837.63` comes back as the same float the exchange string parses to).
    #[inline]
    pub fn ticks_to_price(&self, ticks: i64) -> f64 {
        match self.price_scale {
            Some(scale) => {
                let units = ticks as f64 * self.tick_units;
                if units.abs() < 9.0e15 {
                    units / scale
                } else {
                    ticks as f64 * self.tick_size
                }
            }
            None => ticks as f64 * self.tick_size,
        }
    }

    /// Exact decimal string of a tick price (see [`pricing::ticks_to_decimal_str`]).
    pub fn ticks_to_decimal_str(&self, ticks: i64) -> String {
        match pricing::step_units(self.tick_size) {
            Ok((units, decimals)) => match i128::from(ticks).checked_mul(units) {
                Some(value) => format_scaled(value, decimals),
                None => format!("{}", self.ticks_to_price(ticks)),
            },
            Err(_) => format!("{}", self.ticks_to_price(ticks)),
        }
    }

    /// Number of decimals of the tick size (2 for 0.01).
    pub fn tick_decimals(&self) -> u32 {
        self.tick_decimals
    }

    /// Validates `levels` into `(ticks, qty)` rows in `out` (cleared first).
    fn convert_levels(
        &self,
        field: &'static str,
        levels: &[(f64, f64)],
        out: &mut Vec<(i64, f64)>,
    ) -> Result<(), BookError> {
        out.clear();
        out.reserve(levels.len());
        for &(price, qty) in levels {
            let ticks = self.ticks_of(field, price)?;
            if !(qty.is_finite() && qty >= 0.0) {
                return Err(BookError::BadQty { field, price, qty });
            }
            out.push((ticks, qty));
        }
        Ok(())
    }

    /// Replaces both sides with a snapshot (rows with qty 0 are skipped; a repeated price keeps
    /// its last qty) and sets the book's id to `update_id`.
    ///
    /// The book becomes valid and waits for the first update straddling `update_id`; a crossed
    /// snapshot leaves it invalid (and `is_crossed`). Returns `Applied` or `Crossed`.
    /// Errors (book unchanged): a bad price, qty or off-grid price.
    pub fn apply_snapshot(
        &mut self,
        bids: &[(f64, f64)],
        asks: &[(f64, f64)],
        update_id: u64,
    ) -> Result<ApplyOutcome, BookError> {
        let mut new_bids = Vec::with_capacity(bids.len().max(64));
        let mut new_asks = Vec::with_capacity(asks.len().max(64));
        self.convert_levels("bids", bids, &mut new_bids)?;
        self.convert_levels("asks", asks, &mut new_asks)?;
        sort_snapshot_side(&mut new_bids);
        sort_snapshot_side(&mut new_asks);
        new_asks.reverse(); // asks descending: best (lowest) last

        let before = self.bbo_key();
        self.bids = new_bids;
        self.asks = new_asks;
        self.last_update_id = Some(update_id);
        self.awaiting_first = true;
        self.version += 1;
        self.set_bbo_flags(before);
        self.crossed = false;
        self.valid = true;
        self.invalid_reason = None;
        Ok(self.check_crossed())
    }

    /// Applies one depth event: `first_update_id` = `U`, `last_update_id` = `u`,
    /// `prev_update_id` = `pu` (futures only; `None` selects the spot rules).
    ///
    /// Returns the outcome (see [`ApplyOutcome`] and the module documentation). Errors (book
    /// unchanged): a bad price, qty or off-grid price, or `U > u`; all levels are validated before
    /// anything changes.
    pub fn apply_update(
        &mut self,
        bids: &[(f64, f64)],
        asks: &[(f64, f64)],
        first_update_id: u64,
        last_update_id: u64,
        prev_update_id: Option<u64>,
    ) -> Result<ApplyOutcome, BookError> {
        if !self.valid {
            self.clear_bbo_flags();
            return Ok(ApplyOutcome::NotSynced);
        }
        let mut scratch_bids = std::mem::take(&mut self.scratch_bids);
        let mut scratch_asks = std::mem::take(&mut self.scratch_asks);
        let result = self.apply_update_with(
            bids,
            asks,
            first_update_id,
            last_update_id,
            prev_update_id,
            &mut scratch_bids,
            &mut scratch_asks,
        );
        self.scratch_bids = scratch_bids;
        self.scratch_asks = scratch_asks;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_update_with(
        &mut self,
        bids: &[(f64, f64)],
        asks: &[(f64, f64)],
        first: u64,
        last: u64,
        prev: Option<u64>,
        scratch_bids: &mut Vec<(i64, f64)>,
        scratch_asks: &mut Vec<(i64, f64)>,
    ) -> Result<ApplyOutcome, BookError> {
        if first > last {
            return Err(BookError::BadIds { first, last });
        }
        self.convert_levels("bids", bids, scratch_bids)?;
        self.convert_levels("asks", asks, scratch_asks)?;

        let Some(book_id) = self.last_update_id else {
            // valid implies a snapshot; kept total for safety
            self.clear_bbo_flags();
            return Ok(ApplyOutcome::NotSynced);
        };
        if let Some(outcome) = self.check_sequence(first, last, prev, book_id) {
            self.clear_bbo_flags();
            return Ok(outcome);
        }

        let before = self.bbo_key();
        for &(ticks, qty) in scratch_bids.iter() {
            set_level(&mut self.bids, ticks, qty, false);
        }
        for &(ticks, qty) in scratch_asks.iter() {
            set_level(&mut self.asks, ticks, qty, true);
        }
        self.last_update_id = Some(last);
        self.awaiting_first = false;
        self.version += 1;
        self.set_bbo_flags(before);
        Ok(self.check_crossed())
    }

    /// Binance sequencing; `Some(Stale | Gap)` when the update must not be applied.
    #[inline]
    fn check_sequence(
        &mut self,
        first: u64,
        last: u64,
        prev: Option<u64>,
        book_id: u64,
    ) -> Option<ApplyOutcome> {
        let gap_reason = if self.awaiting_first {
            match prev {
                None => {
                    // spot: drop u <= L; first event must satisfy U <= L+1 <= u
                    if last <= book_id {
                        return Some(ApplyOutcome::Stale);
                    }
                    let next = book_id.saturating_add(1);
                    if first <= next && next <= last {
                        return None;
                    }
                    format!(
                        "sequence gap (spot): first update after snapshot {book_id} must have \
                         first_update_id <= {next} <= last_update_id, got first_update_id \
                         {first}, last_update_id {last}"
                    )
                }
                Some(_) => {
                    // futures: drop u < L; first event must satisfy U <= L <= u
                    if last < book_id {
                        return Some(ApplyOutcome::Stale);
                    }
                    if first <= book_id && book_id <= last {
                        return None;
                    }
                    format!(
                        "sequence gap (futures): first update after snapshot {book_id} must have \
                         first_update_id <= {book_id} <= last_update_id, got first_update_id \
                         {first}, last_update_id {last}"
                    )
                }
            }
        } else {
            if last <= book_id {
                return Some(ApplyOutcome::Stale);
            }
            match prev {
                Some(pu) if pu == book_id => return None,
                Some(pu) => format!(
                    "sequence gap (futures): prev_update_id {pu} != last_update_id {book_id} \
                     (update first_update_id {first}, last_update_id {last})"
                ),
                None if first == book_id.saturating_add(1) => return None,
                None => format!(
                    "sequence gap (spot): first_update_id {first} != last_update_id {book_id} + 1 \
                     (update last_update_id {last})"
                ),
            }
        };
        self.valid = false;
        self.invalid_reason = Some(gap_reason);
        self.gap_count += 1;
        Some(ApplyOutcome::Gap)
    }

    /// Marks the book crossed/invalid when best bid >= best ask.
    fn check_crossed(&mut self) -> ApplyOutcome {
        if let (Some(&(bid, _)), Some(&(ask, _))) = (self.bids.last(), self.asks.last()) {
            if bid >= ask {
                self.crossed = true;
                self.valid = false;
                self.invalid_reason = Some(format!(
                    "crossed: best bid {} >= best ask {}",
                    self.ticks_to_decimal_str(bid),
                    self.ticks_to_decimal_str(ask)
                ));
                return ApplyOutcome::Crossed;
            }
        }
        ApplyOutcome::Applied
    }

    /// Applies a pre-built message: a snapshot (id = its `last_update_id`) or an update.
    pub fn apply_delta(&mut self, delta: &L2Delta) -> Result<ApplyOutcome, BookError> {
        if delta.is_snapshot {
            self.apply_snapshot(&delta.bids, &delta.asks, delta.last_update_id)
        } else {
            self.apply_update(
                &delta.bids,
                &delta.asks,
                delta.first_update_id,
                delta.last_update_id,
                delta.prev_update_id,
            )
        }
    }

    /// Best (bid, ask) as `(ticks, qty)` bit patterns for change detection.
    #[inline]
    fn bbo_key(&self) -> BboKey {
        (
            self.bids.last().map(|&(t, q)| (t, q.to_bits())),
            self.asks.last().map(|&(t, q)| (t, q.to_bits())),
        )
    }

    /// Best bid `(price, qty)`.
    #[inline]
    pub fn best_bid(&self) -> Option<(f64, f64)> {
        self.bids.last().map(|&(t, q)| (self.ticks_to_price(t), q))
    }
    /// Best ask `(price, qty)`.
    #[inline]
    pub fn best_ask(&self) -> Option<(f64, f64)> {
        self.asks.last().map(|&(t, q)| (self.ticks_to_price(t), q))
    }
    #[inline]
    pub fn best_bid_ticks(&self) -> Option<i64> {
        self.bids.last().map(|&(t, _)| t)
    }
    #[inline]
    pub fn best_ask_ticks(&self) -> Option<i64> {
        self.asks.last().map(|&(t, _)| t)
    }

    /// `(best bid + best ask) / 2`; `None` if a side is empty.
    pub fn mid(&self) -> Option<f64> {
        let (bid, _) = self.best_bid()?;
        let (ask, _) = self.best_ask()?;
        Some((bid + ask) / 2.0)
    }

    /// `(ask - bid) / mid * 1e4`; `None` if a side is empty.
    pub fn spread_bps(&self) -> Option<f64> {
        let (bid, _) = self.best_bid()?;
        let (ask, _) = self.best_ask()?;
        let mid = (bid + ask) / 2.0;
        Some((ask - bid) / mid * 1e4)
    }

    /// Levels of one side as `(price, qty)`, best first.
    pub fn levels(&self, side: BookSide) -> impl Iterator<Item = (f64, f64)> + '_ {
        let rows = match side {
            BookSide::Bid => &self.bids,
            BookSide::Ask => &self.asks,
        };
        rows.iter().rev().map(|&(t, q)| (self.ticks_to_price(t), q))
    }

    /// Levels of one side as `(ticks, qty)`, best first.
    pub fn levels_ticks(&self, side: BookSide) -> impl Iterator<Item = (i64, f64)> + '_ {
        let rows = match side {
            BookSide::Bid => &self.bids,
            BookSide::Ask => &self.asks,
        };
        rows.iter().rev().copied()
    }

    /// Up to `n` levels of each side, best first.
    pub fn depth(&self, n: usize) -> Depth {
        Depth {
            bids: self.levels(BookSide::Bid).take(n).collect(),
            asks: self.levels(BookSide::Ask).take(n).collect(),
        }
    }

    /// Walks the asks (`Buy`) or bids (`Sell`) for `qty`; does not check validity.
    ///
    /// Errors: `qty` not finite or `<= 0`.
    pub fn executable_price(&self, side: Side, qty: f64) -> Result<Execution, BookError> {
        if !(qty.is_finite() && qty > 0.0) {
            return Err(BookError::BadExecQty { qty });
        }
        Ok(self.execution(side, qty))
    }

    /// [`OrderBook::executable_price`] for a `qty` already checked finite and `> 0`.
    pub(crate) fn execution(&self, side: Side, qty: f64) -> Execution {
        let rows = match side {
            Side::Buy => &self.asks,
            Side::Sell => &self.bids,
        };
        // float noise: a remainder below this is treated as filled
        let tolerance = qty * 1e-12;
        let mut remaining = qty;
        let mut notional = 0.0;
        let mut filled = 0.0;
        let mut levels = 0usize;
        let mut worst = None;
        for &(ticks, level_qty) in rows.iter().rev() {
            if remaining <= tolerance {
                break;
            }
            let take = level_qty.min(remaining);
            let price = self.ticks_to_price(ticks);
            notional += price * take;
            filled += take;
            remaining -= take;
            levels += 1;
            worst = Some(price);
        }
        let avg_price = if filled > 0.0 { Some(notional / filled) } else { None };
        let best = rows.last().map(|&(t, _)| self.ticks_to_price(t));
        let slippage_bps = match (avg_price, best) {
            (Some(avg), Some(best)) => Some(match side {
                Side::Buy => (avg - best) / best * 1e4,
                Side::Sell => (best - avg) / best * 1e4,
            }),
            _ => None,
        };
        Execution {
            avg_price,
            filled_qty: filled,
            notional,
            worst_price: worst,
            complete: remaining <= tolerance,
            levels,
            slippage_bps,
        }
    }

    /// Quantity available up to a price limit: `Buy` sums ask qty at prices `<= price_limit`,
    /// `Sell` sums bid qty at prices `>= price_limit`. The limit need not be on the grid.
    ///
    /// Errors: `price_limit` not finite.
    pub fn qty_within(&self, side: Side, price_limit: f64) -> Result<f64, BookError> {
        if !price_limit.is_finite() {
            return Err(BookError::BadPriceLimit { price_limit });
        }
        let limit = price_limit / self.tick_size;
        let total = match side {
            Side::Buy => {
                let max_ticks = (limit + GRID_TOLERANCE).floor();
                self.asks
                    .iter()
                    .rev()
                    .take_while(|&&(t, _)| (t as f64) <= max_ticks)
                    .map(|&(_, q)| q)
                    .sum()
            }
            Side::Sell => {
                let min_ticks = (limit - GRID_TOLERANCE).ceil();
                self.bids
                    .iter()
                    .rev()
                    .take_while(|&&(t, _)| (t as f64) >= min_ticks)
                    .map(|&(_, q)| q)
                    .sum()
            }
        };
        Ok(total)
    }

    /// Quantity resting at `price` on `side` (0.0 when there is no level).
    ///
    /// Errors: `price` not finite, `<= 0` or off the grid.
    pub fn qty_at(&self, side: BookSide, price: f64) -> Result<f64, BookError> {
        let ticks = self.ticks_of("price", price)?;
        Ok(self.qty_at_ticks(side, ticks))
    }

    /// Quantity resting at `ticks` on `side` (0.0 when there is no level).
    pub fn qty_at_ticks(&self, side: BookSide, ticks: i64) -> f64 {
        let (rows, descending) = match side {
            BookSide::Bid => (&self.bids, false),
            BookSide::Ask => (&self.asks, true),
        };
        match search(rows, ticks, descending) {
            Ok(i) => rows.get(i).map_or(0.0, |&(_, q)| q),
            Err(_) => 0.0,
        }
    }
}

/// Sorts snapshot rows ascending by ticks; a repeated price keeps its last qty; qty 0 removed.
fn sort_snapshot_side(rows: &mut Vec<(i64, f64)>) {
    rows.sort_by_key(|&(t, _)| t); // stable: equal ticks keep input order
    rows.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 = later.1;
            true
        } else {
            false
        }
    });
    rows.retain(|&(_, q)| q > 0.0);
}

/// Binary search of `ticks` in a side sorted ascending (`descending == false`) or descending.
#[inline]
fn search(rows: &[(i64, f64)], ticks: i64, descending: bool) -> Result<usize, usize> {
    if descending {
        rows.binary_search_by(|&(t, _)| ticks.cmp(&t))
    } else {
        rows.binary_search_by(|&(t, _)| t.cmp(&ticks))
    }
}

/// Sets the absolute qty at `ticks` (0 deletes; deleting an absent level is a no-op).
#[inline]
fn set_level(rows: &mut Vec<(i64, f64)>, ticks: i64, qty: f64, descending: bool) {
    match search(rows, ticks, descending) {
        Ok(i) => {
            if qty == 0.0 {
                rows.remove(i);
            } else if let Some(row) = rows.get_mut(i) {
                row.1 = qty;
            }
        }
        Err(i) => {
            if qty != 0.0 {
                rows.insert(i, (ticks, qty));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn book() -> OrderBook {
        let mut b = OrderBook::new(0.01, 0.00001).unwrap();
        b.apply_snapshot(
            &[(100.0, 1.0), (99.99, 2.0), (99.98, 3.0)],
            &[(100.01, 1.5), (100.02, 2.5), (100.05, 4.0)],
            100,
        )
        .unwrap();
        b
    }

    fn assert_state_eq(a: &OrderBook, b: &OrderBook) {
        assert_eq!(a.bids, b.bids);
        assert_eq!(a.asks, b.asks);
        assert_eq!(a.last_update_id, b.last_update_id);
        assert_eq!(a.valid, b.valid);
        assert_eq!(a.version, b.version);
        assert_eq!(a.gap_count, b.gap_count);
        assert_eq!(a.awaiting_first, b.awaiting_first);
    }

    #[test]
    fn snapshot_sorts_and_reads_best() {
        let b = book();
        assert!(b.is_valid());
        assert_eq!(b.best_bid(), Some((100.0, 1.0)));
        assert_eq!(b.best_ask(), Some((100.01, 1.5)));
        assert_eq!(b.best_bid_ticks(), Some(10_000));
        assert_eq!(b.n_bids(), 3);
        assert_eq!(b.last_update_id(), Some(100));
        let depth = b.depth(2);
        assert_eq!(depth.bids, vec![(100.0, 1.0), (99.99, 2.0)]);
        assert_eq!(depth.asks, vec![(100.01, 1.5), (100.02, 2.5)]);
        let spread = b.spread_bps().unwrap();
        assert!((spread - 0.01 / 100.005 * 1e4).abs() < 1e-9);
    }

    #[test]
    fn no_snapshot_not_synced() {
        let mut b = OrderBook::new(0.01, 1.0).unwrap();
        assert!(!b.is_valid());
        assert_eq!(b.invalid_reason(), Some("no snapshot yet"));
        assert_eq!(b.apply_update(&[], &[], 1, 2, None).unwrap(), ApplyOutcome::NotSynced);
        assert!(matches!(b.require_valid(), Err(BookError::Invalid { .. })));
        assert_eq!(b.last_update_id(), None);
    }

    #[test]
    fn straddle_spot() {
        let mut b = book();
        // U <= 101 <= u
        let r = b.apply_update(&[(100.0, 5.0)], &[], 95, 105, None).unwrap();
        assert_eq!(r, ApplyOutcome::Applied);
        assert_eq!(b.best_bid(), Some((100.0, 5.0)));
        assert!(b.bbo_changed());
        assert!(!b.bbo_price_changed(), "qty change at the same best price");
        assert_eq!(b.last_update_id(), Some(105));
        assert_eq!(b.version(), 2);
        assert_eq!(b.apply_update(&[], &[(100.02, 0.0)], 106, 110, None).unwrap(), ApplyOutcome::Applied);
        assert!(!b.bbo_changed());
        assert_eq!(b.n_asks(), 2);
        // best ask removed: the best ask price changes
        assert_eq!(b.apply_update(&[], &[(100.01, 0.0)], 111, 111, None).unwrap(), ApplyOutcome::Applied);
        assert!(b.bbo_changed() && b.bbo_price_changed());
        // a new best bid price
        assert_eq!(b.apply_update(&[(100.01, 1.0)], &[], 112, 112, None).unwrap(), ApplyOutcome::Applied);
        assert!(b.bbo_changed() && b.bbo_price_changed());
    }

    #[test]
    fn straddle_futures() {
        let mut b = book();
        // futures: U <= 100 <= u
        let r = b.apply_update(&[], &[(100.01, 0.0)], 100, 104, Some(99)).unwrap();
        assert_eq!(r, ApplyOutcome::Applied);
        assert_eq!(b.best_ask(), Some((100.02, 2.5)));
        assert_eq!(b.apply_update(&[], &[], 105, 108, Some(104)).unwrap(), ApplyOutcome::Applied);
    }

    #[test]
    fn stale() {
        let mut b = book();
        // spot: u <= id is stale before the first update
        assert_eq!(b.apply_update(&[(1.0, 1.0)], &[], 90, 100, None).unwrap(), ApplyOutcome::Stale);
        // futures: u < id stale, u == id straddles
        let mut f = book();
        assert_eq!(f.apply_update(&[], &[], 90, 99, Some(89)).unwrap(), ApplyOutcome::Stale);
        assert_eq!(f.apply_update(&[], &[], 90, 100, Some(89)).unwrap(), ApplyOutcome::Applied);
        // afterwards u <= last is stale
        assert_eq!(f.apply_update(&[], &[], 95, 100, Some(94)).unwrap(), ApplyOutcome::Stale);
        assert_eq!(b.version(), 1);
        assert!(!b.bbo_changed());
        assert_eq!(b.best_bid(), Some((100.0, 1.0)));
        assert!(b.is_valid());
    }

    #[test]
    fn gap_spot() {
        let mut b = book();
        assert_eq!(b.apply_update(&[], &[], 102, 105, None).unwrap(), ApplyOutcome::Gap);
        assert!(!b.is_valid());
        assert_eq!(b.gap_count(), 1);
        let reason = b.invalid_reason().unwrap().to_owned();
        assert!(reason.contains("101") && reason.contains("102"), "{reason}");
        assert_eq!(b.apply_update(&[], &[], 101, 105, None).unwrap(), ApplyOutcome::NotSynced);
        // mid-stream gap
        let mut b = book();
        assert_eq!(b.apply_update(&[], &[], 101, 105, None).unwrap(), ApplyOutcome::Applied);
        assert_eq!(b.apply_update(&[], &[], 107, 110, None).unwrap(), ApplyOutcome::Gap);
        let reason = b.invalid_reason().unwrap();
        assert!(reason.contains("107") && reason.contains("105"), "{reason}");
        match b.require_valid() {
            Err(BookError::Invalid { reason: r }) => assert!(r.contains("107")),
            other => panic!("{other:?}"),
        }
        // a new snapshot resyncs
        b.apply_snapshot(&[(1.0, 1.0)], &[(2.0, 1.0)], 200).unwrap();
        assert!(b.is_valid());
        assert_eq!(b.invalid_reason(), None);
        assert_eq!(b.gap_count(), 1);
    }

    #[test]
    fn gap_futures() {
        let mut b = book();
        // first event must straddle 100
        assert_eq!(b.apply_update(&[], &[], 101, 105, Some(100)).unwrap(), ApplyOutcome::Gap);
        let mut b = book();
        assert_eq!(b.apply_update(&[], &[], 99, 105, Some(98)).unwrap(), ApplyOutcome::Applied);
        assert_eq!(b.apply_update(&[], &[], 107, 110, Some(106)).unwrap(), ApplyOutcome::Gap);
        let reason = b.invalid_reason().unwrap();
        assert!(reason.contains("106") && reason.contains("105"), "{reason}");
        assert_eq!(b.gap_count(), 1);
    }

    #[test]
    fn crossed_book() {
        let mut b = book();
        let r = b.apply_update(&[(100.01, 1.0)], &[], 101, 101, None).unwrap();
        assert_eq!(r, ApplyOutcome::Crossed);
        assert!(b.is_crossed());
        assert!(!b.is_valid());
        assert_eq!(b.invalid_reason(), Some("crossed: best bid 100.01 >= best ask 100.01"));
        assert_eq!(b.apply_update(&[], &[], 102, 102, None).unwrap(), ApplyOutcome::NotSynced);
        // crossed snapshot
        let mut c = OrderBook::new(0.1, 1.0).unwrap();
        assert_eq!(c.apply_snapshot(&[(10.2, 1.0)], &[(10.1, 1.0)], 5).unwrap(), ApplyOutcome::Crossed);
        assert!(c.is_crossed() && !c.is_valid());
        assert_eq!(c.invalid_reason(), Some("crossed: best bid 10.2 >= best ask 10.1"));
        c.apply_snapshot(&[(10.0, 1.0)], &[(10.1, 1.0)], 6).unwrap();
        assert!(!c.is_crossed() && c.is_valid());
    }

    #[rstest]
    #[case::nan_price(vec![(100.0, 9.0), (f64::NAN, 1.0)], vec![])]
    #[case::negative_qty(vec![(100.0, 9.0)], vec![(100.02, -1.0)])]
    #[case::off_grid_price(vec![(100.0, 9.0)], vec![(100.015, 1.0)])]
    #[case::infinite_qty(vec![(100.0, f64::INFINITY)], vec![])]
    #[case::negative_price(vec![(-100.0, 1.0)], vec![])]
    #[case::zero_price(vec![(0.0, 1.0)], vec![])]
    fn bad_input_leaves_book_unchanged(
        #[case] bids: Vec<(f64, f64)>,
        #[case] asks: Vec<(f64, f64)>,
    ) {
        let reference = book();
        let mut b = book();
        assert!(b.apply_update(&bids, &asks, 101, 102, None).is_err());
        assert_state_eq(&b, &reference);
        assert!(b.apply_update(&bids, &asks, 100, 102, Some(99)).is_err());
        assert_state_eq(&b, &reference);
        assert!(b.apply_snapshot(&bids, &asks, 500).is_err());
        assert_state_eq(&b, &reference);
    }

    #[test]
    fn bad_input_messages() {
        let reference = book();
        let mut b = book();
        let err = b.apply_update(&[], &[(100.015, 1.0)], 101, 102, None).unwrap_err();
        assert_eq!(err.to_string(), "asks price 100.015 not a multiple of tick_size 0.01");
        let err = b.apply_update(&[(100.0, -2.0)], &[], 101, 102, None).unwrap_err();
        assert_eq!(err.to_string(), "bids qty -2 at price 100 must be finite and >= 0");
        assert!(b.apply_update(&[], &[], 105, 102, None).is_err());
        assert_state_eq(&b, &reference);
        assert!(OrderBook::new(0.0, 1.0).is_err());
        assert!(OrderBook::new(0.01, f64::NAN).is_err());
    }

    /// First update after a snapshot with id 100 (Binance: spot `U <= 101 <= u`, futures
    /// `U <= 100 <= u`).
    #[rstest]
    #[case::straddle_spot(95, 105, None, ApplyOutcome::Applied)]
    #[case::straddle_spot_exact(101, 101, None, ApplyOutcome::Applied)]
    #[case::stale_spot(90, 100, None, ApplyOutcome::Stale)]
    #[case::gap_spot(102, 105, None, ApplyOutcome::Gap)]
    #[case::straddle_futures(100, 104, Some(99), ApplyOutcome::Applied)]
    #[case::straddle_futures_u_is_id(95, 100, Some(94), ApplyOutcome::Applied)]
    #[case::stale_futures(90, 99, Some(89), ApplyOutcome::Stale)]
    #[case::gap_futures(101, 105, Some(100), ApplyOutcome::Gap)]
    fn first_update_after_snapshot(
        #[case] first: u64,
        #[case] last: u64,
        #[case] prev: Option<u64>,
        #[case] expected: ApplyOutcome,
    ) {
        let mut b = book();
        assert_eq!(b.apply_update(&[(99.97, 1.0)], &[], first, last, prev).unwrap(), expected);
        let applied = expected == ApplyOutcome::Applied;
        assert_eq!(b.last_update_id(), Some(if applied { last } else { 100 }));
        assert_eq!(b.qty_at(BookSide::Bid, 99.97).unwrap(), if applied { 1.0 } else { 0.0 });
        assert_eq!(b.is_valid(), expected != ApplyOutcome::Gap);
        assert_eq!(b.gap_count(), u64::from(expected == ApplyOutcome::Gap));
    }

    /// Later updates, after one covering 101..=105 (spot `U == 106`, futures `pu == 105`).
    #[rstest]
    #[case::continuous_spot(106, 110, None, ApplyOutcome::Applied)]
    #[case::stale_spot(101, 105, None, ApplyOutcome::Stale)]
    #[case::gap_spot(107, 110, None, ApplyOutcome::Gap)]
    #[case::overlap_spot_is_gap(104, 110, None, ApplyOutcome::Gap)]
    #[case::continuous_futures(106, 110, Some(105), ApplyOutcome::Applied)]
    #[case::stale_futures(100, 105, Some(99), ApplyOutcome::Stale)]
    #[case::gap_futures(106, 110, Some(104), ApplyOutcome::Gap)]
    fn continuity(
        #[case] first: u64,
        #[case] last: u64,
        #[case] prev: Option<u64>,
        #[case] expected: ApplyOutcome,
    ) {
        let mut b = book();
        let start_prev = prev.map(|_| 99);
        assert_eq!(b.apply_update(&[], &[], 100, 105, start_prev).unwrap(), ApplyOutcome::Applied);
        let version = b.version();
        assert_eq!(b.apply_update(&[], &[], first, last, prev).unwrap(), expected);
        assert_eq!(b.version(), version + u64::from(expected == ApplyOutcome::Applied));
        if expected == ApplyOutcome::Gap {
            assert!(!b.is_valid());
            assert!(b.invalid_reason().unwrap().contains("105"));
            assert_eq!(b.apply_update(&[], &[], 106, 110, prev.map(|_| 105)).unwrap(), ApplyOutcome::NotSynced);
        }
    }

    #[test]
    fn on_grid_with_float_noise() {
        let b = OrderBook::new(0.01, 0.00001).unwrap();
        assert_eq!(b.price_to_ticks(61837.63).unwrap(), 6_183_763);
        assert_eq!(b.ticks_to_price(6_183_763), 61837.63);
        assert_eq!(b.price_to_ticks(0.07).unwrap(), 7);
        let f = OrderBook::new(0.1, 0.001).unwrap();
        assert_eq!(f.ticks_to_price(618_002), 61800.2);
        assert!(f.price_to_ticks(61800.25).is_err());
    }

    #[test]
    fn executable_price_walking_levels() {
        let b = book();
        let e = b.executable_price(Side::Buy, 3.0).unwrap();
        assert!(e.complete);
        assert_eq!(e.levels, 2);
        assert_eq!(e.worst_price, Some(100.02));
        let expected = (100.01 * 1.5 + 100.02 * 1.5) / 3.0;
        assert!((e.avg_price.unwrap() - expected).abs() < 1e-9);
        assert!((e.notional - (100.01 * 1.5 + 100.02 * 1.5)).abs() < 1e-9);
        assert!(e.slippage_bps.unwrap() > 0.0);
        let s = b.executable_price(Side::Sell, 1.0).unwrap();
        assert_eq!(s.avg_price, Some(100.0));
        assert_eq!(s.slippage_bps, Some(0.0));
        assert_eq!(s.levels, 1);
        let s = b.executable_price(Side::Sell, 3.0).unwrap();
        assert!((s.slippage_bps.unwrap() - (100.0 - (100.0 + 99.99 * 2.0) / 3.0) / 100.0 * 1e4).abs() < 1e-9);
        // 0.1 + 0.2 float noise still completes on two levels
        let mut n = OrderBook::new(0.01, 0.1).unwrap();
        n.apply_snapshot(&[], &[(1.0, 0.1), (1.01, 0.2), (1.02, 5.0)], 1).unwrap();
        let e = n.executable_price(Side::Buy, 0.3).unwrap();
        assert!(e.complete);
        assert_eq!(e.levels, 2);
        assert!(b.executable_price(Side::Buy, 0.0).is_err());
        assert!(b.executable_price(Side::Buy, f64::NAN).is_err());
    }

    #[test]
    fn executable_price_insufficient_depth() {
        let b = book();
        let e = b.executable_price(Side::Buy, 100.0).unwrap();
        assert!(!e.complete);
        assert_eq!(e.filled_qty, 8.0);
        assert_eq!(e.levels, 3);
        assert_eq!(e.worst_price, Some(100.05));
        let empty = OrderBook::new(0.01, 1.0).unwrap();
        let e = empty.executable_price(Side::Sell, 1.0).unwrap();
        assert_eq!(e.avg_price, None);
        assert_eq!(e.slippage_bps, None);
        assert!(!e.complete);
        assert_eq!(e.levels, 0);
    }

    #[test]
    fn qty_queries() {
        let b = book();
        assert_eq!(b.qty_within(Side::Buy, 100.02).unwrap(), 4.0);
        assert_eq!(b.qty_within(Side::Buy, 100.025).unwrap(), 4.0);
        assert_eq!(b.qty_within(Side::Buy, 100.0).unwrap(), 0.0);
        assert_eq!(b.qty_within(Side::Sell, 99.99).unwrap(), 3.0);
        assert_eq!(b.qty_within(Side::Sell, 99.985).unwrap(), 3.0);
        assert!(b.qty_within(Side::Sell, f64::NAN).is_err());
        assert_eq!(b.qty_at(BookSide::Bid, 99.99).unwrap(), 2.0);
        assert_eq!(b.qty_at(BookSide::Ask, 100.05).unwrap(), 4.0);
        assert_eq!(b.qty_at(BookSide::Ask, 100.03).unwrap(), 0.0);
        assert!(b.qty_at(BookSide::Ask, 100.035).is_err());
        assert!(Side::parse("bid").is_err());
        assert!(BookSide::parse("buy").is_err());
    }

    #[test]
    fn snapshot_dedup_and_zero_rows() {
        let mut b = OrderBook::new(1.0, 1.0).unwrap();
        b.apply_snapshot(&[(5.0, 1.0), (3.0, 0.0), (5.0, 2.0), (4.0, 1.0)], &[(7.0, 1.0), (6.0, 1.0), (6.0, 0.0)], 1)
            .unwrap();
        assert_eq!(b.bids, vec![(4, 1.0), (5, 2.0)]);
        assert_eq!(b.asks, vec![(7, 1.0)]);
    }

    #[test]
    fn delete_absent_level_is_fine() {
        let mut b = book();
        assert_eq!(b.apply_update(&[(50.0, 0.0)], &[(200.0, 0.0)], 101, 101, None).unwrap(), ApplyOutcome::Applied);
        assert_eq!(b.n_bids(), 3);
        assert_eq!(b.n_asks(), 3);
    }

    #[test]
    fn delta_apply() {
        let mut b = OrderBook::new(0.01, 1.0).unwrap();
        let snap = L2Delta::new(vec![(1.0, 1.0)], vec![(1.01, 1.0)], 0, 10, None, true).unwrap();
        assert_eq!(b.apply_delta(&snap).unwrap(), ApplyOutcome::Applied);
        assert_eq!(b.last_update_id(), Some(10));
        let upd = L2Delta::new(vec![(1.0, 2.0)], vec![], 11, 12, None, false).unwrap();
        assert_eq!(b.apply_delta(&upd).unwrap(), ApplyOutcome::Applied);
        assert_eq!(b.best_bid(), Some((1.0, 2.0)));
        assert!(L2Delta::new(vec![(1.0, -2.0)], vec![], 11, 12, None, false).is_err());
        assert!(L2Delta::new(vec![], vec![(f64::NAN, 2.0)], 11, 12, None, false).is_err());
    }

    /// Random updates against a BTreeMap model: same levels, sorted order kept.
    #[test]
    fn matches_btreemap_model() {
        use std::collections::BTreeMap;
        let mut b = OrderBook::new(1.0, 1.0).unwrap();
        b.apply_snapshot(&[(100.0, 1.0)], &[(300.0, 1.0)], 0).unwrap();
        let mut bids: BTreeMap<i64, f64> = BTreeMap::from([(100, 1.0)]);
        let mut asks: BTreeMap<i64, f64> = BTreeMap::from([(300, 1.0)]);
        let mut state = 12345u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for u in 1..5000u64 {
            let mut bl = Vec::new();
            let mut al = Vec::new();
            for _ in 0..(next() % 6) {
                let t = 1 + (next() % 199) as i64;
                let q = if next() % 3 == 0 { 0.0 } else { (next() % 100) as f64 };
                bl.push((t as f64, q));
            }
            for _ in 0..(next() % 6) {
                let t = 201 + (next() % 199) as i64;
                let q = if next() % 3 == 0 { 0.0 } else { (next() % 100) as f64 };
                al.push((t as f64, q));
            }
            assert_eq!(b.apply_update(&bl, &al, u, u, None).unwrap(), ApplyOutcome::Applied);
            for &(p, q) in &bl {
                if q == 0.0 { bids.remove(&(p as i64)); } else { bids.insert(p as i64, q); }
            }
            for &(p, q) in &al {
                if q == 0.0 { asks.remove(&(p as i64)); } else { asks.insert(p as i64, q); }
            }
        }
        let expect_bids: Vec<(i64, f64)> = bids.into_iter().collect();
        let expect_asks: Vec<(i64, f64)> = asks.into_iter().rev().collect();
        assert_eq!(b.bids, expect_bids);
        assert_eq!(b.asks, expect_asks);
    }
}
