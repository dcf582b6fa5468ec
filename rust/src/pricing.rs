//! Spread, basis and funding maths, and exact decimal formatting of tick prices.
//!
//! Units: prices in quote currency per base unit (per contract for inverse perps), quantities in
//! base units or contracts, fees and rates as fractions (0.001 = 10 bps), spreads and basis in
//! basis points (1 bp = 1e-4).
//!
//! Pure Rust: no Python here; the bindings live in `python.rs`.

use thiserror::Error;

use crate::book::{OrderBook, Side};

/// Largest number of decimals [`decimals_for_step`] accepts (10^30 still fits an `i128` with room
/// for the tick count).
pub const MAX_DECIMALS: u32 = 30;

/// Errors of the pricing functions; each message names the field and its value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PricingError {
    /// A value that must be a finite number was NaN or infinite.
    #[error("{field} {value} must be finite")]
    NotFinite { field: &'static str, value: f64 },
    /// A value that must be strictly positive was zero or negative (or non-finite).
    #[error("{field} {value} must be finite and > 0")]
    NotPositive { field: &'static str, value: f64 },
    /// A value that must be zero or positive was negative (or non-finite).
    #[error("{field} {value} must be finite and >= 0")]
    Negative { field: &'static str, value: f64 },
    /// A step whose shortest decimal representation has more than [`MAX_DECIMALS`] decimals.
    #[error("{field} {value} has {decimals} decimals, more than the {max} supported")]
    TooManyDecimals { field: &'static str, value: f64, decimals: u32, max: u32 },
    /// `ticks * tick_size` does not fit the integer arithmetic used for exact formatting.
    #[error("ticks {ticks} * tick_size {tick_size} overflows the exact decimal arithmetic")]
    Overflow { ticks: i64, tick_size: f64 },
    /// A quantity that is not a whole number of lots (within 1e-6 lot).
    #[error("qty {qty} is not a multiple of lot_size {lot_size}")]
    OffLotGrid { qty: f64, lot_size: f64 },
    /// The size an arbitrage entry buys for its target notional is below the min notional.
    #[error(
        "position size {target} buys {qty} (whole lots of both instruments) worth {value:.2}, below the \
         min notional {min_notional}"
    )]
    BelowMinNotional { target: f64, qty: f64, value: f64, min_notional: f64 },
    /// A value outside the half-open range `[min, max)` (or NaN).
    #[error("{field} {value} must be finite and within [{min}, {max})")]
    OutOfRange { field: &'static str, value: f64, min: f64, max: f64 },
}

/// Largest tick / lot count a float computation may be cast to `i64` from (exact in `f64`).
pub const MAX_EXACT_COUNT: f64 = 9.0e15;

pub(crate) fn finite(field: &'static str, value: f64) -> Result<f64, PricingError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(PricingError::NotFinite { field, value })
    }
}

pub(crate) fn positive(field: &'static str, value: f64) -> Result<f64, PricingError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(PricingError::NotPositive { field, value })
    }
}

pub(crate) fn non_negative(field: &'static str, value: f64) -> Result<f64, PricingError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(PricingError::Negative { field, value })
    }
}

/// Number of decimals in the shortest decimal representation that round-trips `step`.
///
/// Uses Rust's `Display` for `f64`, which prints the shortest round-tripping digits and never an
/// exponent: `0.01` → 2, `0.00001` → 5, `5.0` → 0, `0.5` → 1.
///
/// Errors: `step` not finite or `<= 0`; more than [`MAX_DECIMALS`] decimals.
pub fn decimals_for_step(step: f64) -> Result<u32, PricingError> {
    positive("step", step)?;
    let text = format!("{step}");
    let decimals = match text.split_once('.') {
        Some((_, frac)) => u32::try_from(frac.len()).unwrap_or(u32::MAX),
        None => 0,
    };
    if decimals > MAX_DECIMALS {
        return Err(PricingError::TooManyDecimals {
            field: "step",
            value: step,
            decimals,
            max: MAX_DECIMALS,
        });
    }
    Ok(decimals)
}

/// `step` as an integer number of units of `10^-decimals`, with `decimals = decimals_for_step(step)`.
///
/// `0.01` → `(1, 2)`, `0.5` → `(5, 1)`, `5.0` → `(5, 0)`.
pub fn step_units(step: f64) -> Result<(i128, u32), PricingError> {
    let decimals = decimals_for_step(step)?;
    let scaled = (step * 10f64.powi(decimals as i32)).round();
    // `step` is finite and has at most MAX_DECIMALS decimals; `scaled` is finite, but may be too
    // large for i128 (step ~ 1e300).
    if !(1.0..1.0e37).contains(&scaled) {
        return Err(PricingError::TooManyDecimals {
            field: "step",
            value: step,
            decimals,
            max: MAX_DECIMALS,
        });
    }
    Ok((scaled as i128, decimals))
}

/// Exact decimal string of the price `ticks * tick_size`, with exactly
/// `decimals_for_step(tick_size)` decimals.
///
/// Integer arithmetic only (never float formatting of the product): the step is written as an
/// integer count of `10^-d` units, multiplied by `ticks`, and the decimal point is inserted.
/// `(6183763, 0.01)` → `"61837.63"`, `(5, 0.00001)` → `"0.00005"`, `(-12, 0.1)` → `"-1.2"`,
/// `(3, 5.0)` → `"15"`.
///
/// Errors: `tick_size` not finite or `<= 0`, too many decimals, or an overflowing product.
pub fn ticks_to_decimal_str(ticks: i64, tick_size: f64) -> Result<String, PricingError> {
    let (units, decimals) = step_units(tick_size)?;
    let value = i128::from(ticks)
        .checked_mul(units)
        .ok_or(PricingError::Overflow { ticks, tick_size })?;
    Ok(format_scaled(value, decimals))
}

/// Formats the integer `value` scaled by `10^-decimals` as a plain decimal string
/// (`12345, 2` -> `"123.45"`, `5, 3` -> `"0.005"`, `-7, 0` -> `"-7"`), digits written directly
/// (no `format!` machinery: this is on the order path).
pub(crate) fn format_scaled(value: i128, decimals: u32) -> String {
    // sign + 39 digits of u128 + point + up to MAX_DECIMALS leading zeros
    let mut buf = [0u8; 80];
    let mut pos = buf.len();
    let mut push = |digit: u8| {
        pos -= 1;
        if let Some(slot) = buf.get_mut(pos) {
            *slot = digit;
        }
    };
    // the fractional digits, the point, then at least one integer digit; on u64 when the value
    // fits (u128 division is a library call)
    macro_rules! digits {
        ($m:expr) => {{
            let mut m = $m;
            for _ in 0..decimals {
                push(b'0' + (m % 10) as u8);
                m /= 10;
            }
            if decimals > 0 {
                push(b'.');
            }
            loop {
                push(b'0' + (m % 10) as u8);
                m /= 10;
                if m == 0 {
                    break;
                }
            }
        }};
    }
    let magnitude = value.unsigned_abs();
    match u64::try_from(magnitude) {
        Ok(small) => digits!(small),
        Err(_) => digits!(magnitude),
    }
    if value < 0 {
        push(b'-');
    }
    // only ASCII digits, '.', '-' were written
    buf.get(pos..).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default().to_owned()
}

/// Entry spread in bps of buying `qty` on `buy_book` and selling `qty` on `sell_book`, net of
/// taker fees:
///
/// `(sell_avg * (1 - sell_fee) - buy_avg * (1 + buy_fee)) / buy_avg * 1e4`
///
/// where `buy_avg` is the executable average ask of `buy_book` for `qty` and `sell_avg` the
/// executable average bid of `sell_book`. Positive means the round trip earns money.
///
/// Returns `Ok(None)` when either book is invalid (no snapshot, gap, crossed) or cannot fill
/// `qty`. Errors: `qty` not finite or `<= 0`, fees not finite.
pub fn entry_spread_bps(
    buy_book: &OrderBook,
    sell_book: &OrderBook,
    qty: f64,
    buy_taker_fee: f64,
    sell_taker_fee: f64,
) -> Result<Option<f64>, PricingError> {
    positive("qty", qty)?;
    finite("buy_taker_fee", buy_taker_fee)?;
    finite("sell_taker_fee", sell_taker_fee)?;
    let (Some(buy_avg), Some(sell_avg)) =
        (complete_avg(buy_book, Side::Buy, qty), complete_avg(sell_book, Side::Sell, qty))
    else {
        return Ok(None);
    };
    Ok(Some(net_spread_bps(buy_avg, sell_avg, buy_taker_fee, sell_taker_fee)))
}

/// `(sell_avg * (1 - sell_fee) - buy_avg * (1 + buy_fee)) / buy_avg * 1e4`: the round trip's
/// spread in bps net of both taker fees (the formula of [`entry_spread_bps`]).
#[inline]
fn net_spread_bps(buy_avg: f64, sell_avg: f64, buy_fee: f64, sell_fee: f64) -> f64 {
    (sell_avg * (1.0 - sell_fee) - buy_avg * (1.0 + buy_fee)) / buy_avg * 1e4
}

/// The better direction of a cross-venue round trip of `qty` between books `a` and `b`
/// (see [`best_cross`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossOpportunity {
    /// Buy on `a` and sell on `b` (else buy on `b`, sell on `a`).
    pub buy_on_a: bool,
    /// Entry spread of that direction, bps net of both taker fees ([`entry_spread_bps`]).
    pub spread_bps: f64,
    /// Average ask of the buy book / bid of the sell book for `qty` (quote currency).
    pub buy_avg: f64,
    pub sell_avg: f64,
    /// Slippage of each average vs its best price, bps (>= 0).
    pub buy_slippage_bps: f64,
    pub sell_slippage_bps: f64,
    /// Best ask of the buy book and best bid of the sell book, in their books' ticks.
    pub buy_best_ticks: i64,
    pub sell_best_ticks: i64,
}

/// Both directions of a cross-venue round trip of `qty` (buy on one book, sell on the other),
/// each walked for `qty` and net of the taker fees as in [`entry_spread_bps`]; returns the one
/// with the higher spread (`a`-buy on a tie), with what a strategy needs to validate and price
/// its orders, in one call: four book walks, no allocation.
///
/// Returns `Ok(None)` when either book is invalid or neither direction can fill `qty`.
/// Errors: `qty` not finite or `<= 0`, fees not finite.
pub fn best_cross(
    a: &OrderBook,
    b: &OrderBook,
    qty: f64,
    a_taker_fee: f64,
    b_taker_fee: f64,
) -> Result<Option<CrossOpportunity>, PricingError> {
    positive("qty", qty)?;
    finite("a_taker_fee", a_taker_fee)?;
    finite("b_taker_fee", b_taker_fee)?;
    if !(a.is_valid() && b.is_valid()) {
        return Ok(None);
    }
    let direction = |buy: &OrderBook, sell: &OrderBook, buy_fee: f64, sell_fee: f64, buy_on_a: bool| {
        let bought = buy.execution(Side::Buy, qty);
        let sold = sell.execution(Side::Sell, qty);
        if !(bought.complete && sold.complete) {
            return None;
        }
        let (buy_avg, sell_avg) = (bought.avg_price?, sold.avg_price?);
        Some(CrossOpportunity {
            buy_on_a,
            spread_bps: net_spread_bps(buy_avg, sell_avg, buy_fee, sell_fee),
            buy_avg,
            sell_avg,
            buy_slippage_bps: bought.slippage_bps.unwrap_or(0.0),
            sell_slippage_bps: sold.slippage_bps.unwrap_or(0.0),
            buy_best_ticks: buy.best_ask_ticks()?,
            sell_best_ticks: sell.best_bid_ticks()?,
        })
    };
    let a_to_b = direction(a, b, a_taker_fee, b_taker_fee, true);
    let b_to_a = direction(b, a, b_taker_fee, a_taker_fee, false);
    Ok(match (a_to_b, b_to_a) {
        (Some(x), Some(y)) => Some(if y.spread_bps > x.spread_bps { y } else { x }),
        (x, y) => x.or(y),
    })
}

/// Whole multiples of one step (a tick or a lot) as exact decimal text, with the step's decimal
/// form ([`step_units`]) worked out once instead of on every call of [`ticks_to_decimal_str`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecimalStep {
    step: f64,
    units: i128,
    decimals: u32,
}

impl DecimalStep {
    /// Errors: as [`step_units`] (`step` not finite, `<= 0`, or too many decimals).
    pub fn new(step: f64) -> Result<Self, PricingError> {
        let (units, decimals) = step_units(step)?;
        Ok(Self { step, units, decimals })
    }

    /// The step (quote currency per tick, or base units / contracts per lot).
    pub fn step(&self) -> f64 {
        self.step
    }

    /// `n * step` as a plain decimal string; the same text as `ticks_to_decimal_str(n, step)`.
    ///
    /// Errors: [`PricingError::Overflow`] when `n * step` does not fit the exact arithmetic.
    pub fn format(&self, n: i64) -> Result<String, PricingError> {
        let value = i128::from(n)
            .checked_mul(self.units)
            .ok_or(PricingError::Overflow { ticks: n, tick_size: self.step })?;
        Ok(format_scaled(value, self.decimals))
    }

    /// The `f64` nearest to the exact decimal `n * step` -- the float that parsing
    /// [`Self::format`]'s text gives -- computed as `(n * units) / 10^decimals` when both are
    /// exact in `f64` (one correctly rounded division), else by parsing the text.
    ///
    /// Errors: [`PricingError::Overflow`] as [`Self::format`].
    pub fn value(&self, n: i64) -> Result<f64, PricingError> {
        let scaled = i128::from(n)
            .checked_mul(self.units)
            .ok_or(PricingError::Overflow { ticks: n, tick_size: self.step })?;
        if scaled.unsigned_abs() < (1u128 << 53) && self.decimals <= 22 {
            return Ok(scaled as f64 / 10f64.powi(self.decimals as i32));
        }
        let text = format_scaled(scaled, self.decimals);
        text.parse::<f64>().map_err(|_| PricingError::Overflow { ticks: n, tick_size: self.step })
    }

    /// `qty / step` as a whole count, when `qty` is on the grid within 1e-6 step (plus 1e-12
    /// relative float noise) — the tolerance of `OrderRequest.create`.
    ///
    /// Errors: [`PricingError::OffLotGrid`] naming `qty` and the step.
    pub fn count(&self, qty: f64) -> Result<i64, PricingError> {
        let exact = qty / self.step;
        let whole = exact.round();
        if !(exact.is_finite() && (1.0..9.0e15).contains(&whole))
            || (exact - whole).abs() > 1e-6_f64.max(exact * 1e-12)
        {
            return Err(PricingError::OffLotGrid { qty, lot_size: self.step });
        }
        Ok(whole as i64)
    }
}

/// Sizing and thresholds of a SIMPLE_ARBITRAGE entry (spec `state-machines.md` §1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArbEntryParams {
    /// Target notional per cycle, quote currency (`position_size_usdt`).
    pub notional: f64,
    /// Quantity step: the coarser lot of the two instruments, base units.
    pub step: f64,
    /// The larger min notional of the two instruments, quote currency.
    pub min_notional: f64,
    pub a_taker_fee: f64,
    pub b_taker_fee: f64,
    /// Minimum net entry spread that is an opportunity, bps (`min_profit_threshold * 1e4`).
    pub threshold_bps: f64,
    /// Max fraction between best price and limit price (`slippage_tolerance`).
    pub slippage_tolerance: f64,
}

impl ArbEntryParams {
    /// Errors: a size, step or fee not finite, or a size / step `<= 0`; `slippage_tolerance` not
    /// within `[0, 1)` (a fraction of the price); naming the field.
    pub fn validate(&self) -> Result<(), PricingError> {
        positive("notional", self.notional)?;
        positive("step", self.step)?;
        non_negative("min_notional", self.min_notional)?;
        finite("a_taker_fee", self.a_taker_fee)?;
        finite("b_taker_fee", self.b_taker_fee)?;
        finite("threshold_bps", self.threshold_bps)?;
        if !(0.0..1.0).contains(&self.slippage_tolerance) {
            return Err(PricingError::OutOfRange {
                field: "slippage_tolerance",
                value: self.slippage_tolerance,
                min: 0.0,
                max: 1.0,
            });
        }
        Ok(())
    }
}

/// What [`arb_entry`] found on the current books.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArbSignal {
    /// The better direction for `qty` ([`best_cross`]).
    pub cross: CrossOpportunity,
    /// Size of the round trip: the largest whole number of steps worth <= the target notional at
    /// book `a`'s mid, base units.
    pub qty: f64,
    /// When the spread reaches the threshold: the buy leg's IOC limit, the buy book's best ask
    /// raised by the slippage tolerance and rounded up to its tick grid,
    /// `ceil(best_ask_ticks * (1 + slippage_tolerance) - 1e-9)`.
    pub buy_limit_ticks: Option<i64>,
}

/// The SIMPLE_ARBITRAGE scan in one call (spec `state-machines.md` §1): size the round trip from
/// the target notional at book `a`'s mid, walk both directions for that size net of both taker
/// fees ([`best_cross`]), and when the better spread is >= the threshold, price the buy leg.
///
/// Returns `Ok(None)` when a book is invalid, a side is empty, or neither direction fills.
/// Errors: bad parameters; [`PricingError::BelowMinNotional`] when the size is zero or worth less
/// than the min notional at the mid.
pub fn arb_entry(a: &OrderBook, b: &OrderBook, params: &ArbEntryParams) -> Result<Option<ArbSignal>, PricingError> {
    if !(a.is_valid() && b.is_valid()) {
        return Ok(None);
    }
    let Some(mid) = a.mid() else {
        return Ok(None);
    };
    let qty = (params.notional / mid / params.step + 1e-9).floor() * params.step;
    if qty <= 0.0 || qty * mid < params.min_notional {
        return Err(PricingError::BelowMinNotional {
            target: params.notional,
            qty,
            value: qty * mid,
            min_notional: params.min_notional,
        });
    }
    let Some(cross) = best_cross(a, b, qty, params.a_taker_fee, params.b_taker_fee)? else {
        return Ok(None);
    };
    let buy_limit_ticks = if cross.spread_bps >= params.threshold_bps {
        let limit = (cross.buy_best_ticks as f64 * (1.0 + params.slippage_tolerance) - 1e-9).ceil();
        // checked before the cast: `as i64` would saturate a huge or NaN limit silently
        if !(limit.is_finite() && (1.0..MAX_EXACT_COUNT).contains(&limit)) {
            return Err(PricingError::OutOfRange {
                field: "buy_limit_ticks",
                value: limit,
                min: 1.0,
                max: MAX_EXACT_COUNT,
            });
        }
        Some(limit as i64)
    } else {
        None
    };
    Ok(Some(ArbSignal { cross, qty, buy_limit_ticks }))
}

/// Exit spread in bps of unwinding a position: sell `qty` on `long_book` (at its executable
/// average bid) and buy back `qty` on `short_book` (at its executable average ask), net of fees:
///
/// `(long_sell_avg * (1 - long_fee) - short_buy_avg * (1 + short_fee)) / short_buy_avg * 1e4`
///
/// Returns `Ok(None)` when either book is invalid or cannot fill `qty`. Errors as
/// [`entry_spread_bps`].
pub fn exit_spread_bps(
    long_book: &OrderBook,
    short_book: &OrderBook,
    qty: f64,
    long_taker_fee: f64,
    short_taker_fee: f64,
) -> Result<Option<f64>, PricingError> {
    positive("qty", qty)?;
    finite("long_taker_fee", long_taker_fee)?;
    finite("short_taker_fee", short_taker_fee)?;
    let (Some(long_sell_avg), Some(short_buy_avg)) =
        (complete_avg(long_book, Side::Sell, qty), complete_avg(short_book, Side::Buy, qty))
    else {
        return Ok(None);
    };
    Ok(Some(
        (long_sell_avg * (1.0 - long_taker_fee) - short_buy_avg * (1.0 + short_taker_fee))
            / short_buy_avg
            * 1e4,
    ))
}

/// Average price of filling `qty` on `side` of a valid book, `None` if invalid or too shallow.
fn complete_avg(book: &OrderBook, side: Side, qty: f64) -> Option<f64> {
    if !book.is_valid() {
        return None;
    }
    let execution = book.execution(side, qty);
    if execution.complete {
        execution.avg_price
    } else {
        None
    }
}

/// Basis of a perpetual over spot, in bps: `(perp_price - spot_price) / spot_price * 1e4`.
///
/// Errors: either price not finite or `<= 0`.
pub fn basis_bps(perp_price: f64, spot_price: f64) -> Result<f64, PricingError> {
    positive("perp_price", perp_price)?;
    positive("spot_price", spot_price)?;
    Ok((perp_price - spot_price) / spot_price * 1e4)
}

/// Funding rate per interval annualised: `rate * 24 * 365 / interval_hours` (simple, not
/// compounded). Binance perpetuals fund every 8 hours by default.
///
/// Errors: `rate_per_interval` not finite; `interval_hours` not finite or `<= 0`.
pub fn annualized_funding_rate(
    rate_per_interval: f64,
    interval_hours: f64,
) -> Result<f64, PricingError> {
    finite("rate_per_interval", rate_per_interval)?;
    positive("interval_hours", interval_hours)?;
    Ok(rate_per_interval * 24.0 * 365.0 / interval_hours)
}

/// Expected funding PnL in quote currency of holding `perp_qty` (signed, short negative) for
/// `n_intervals` funding intervals: `-perp_qty * mark_price * funding_rate * n_intervals`.
///
/// Positive funding means longs pay shorts (Binance, "Introduction to funding rates"): a short
/// (`perp_qty < 0`) earns. Funding payment = position notional at mark price * funding rate.
///
/// Errors: `perp_qty`, `funding_rate` not finite; `mark_price` not finite or `<= 0`;
/// `n_intervals` not finite or `< 0`.
pub fn expected_funding_pnl(
    perp_qty: f64,
    mark_price: f64,
    funding_rate: f64,
    n_intervals: f64,
) -> Result<f64, PricingError> {
    finite("perp_qty", perp_qty)?;
    positive("mark_price", mark_price)?;
    finite("funding_rate", funding_rate)?;
    non_negative("n_intervals", n_intervals)?;
    Ok(-perp_qty * mark_price * funding_rate * n_intervals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_formatting() {
        assert_eq!(ticks_to_decimal_str(6_183_763, 0.01).unwrap(), "61837.63");
        assert_eq!(ticks_to_decimal_str(5, 0.00001).unwrap(), "0.00005");
        assert_eq!(ticks_to_decimal_str(-12, 0.1).unwrap(), "-1.2");
        assert_eq!(ticks_to_decimal_str(3, 5.0).unwrap(), "15");
        assert_eq!(ticks_to_decimal_str(0, 0.01).unwrap(), "0.00");
        assert_eq!(ticks_to_decimal_str(-5, 0.01).unwrap(), "-0.05");
        assert_eq!(ticks_to_decimal_str(3, 0.5).unwrap(), "1.5");
        assert_eq!(ticks_to_decimal_str(618_002, 0.1).unwrap(), "61800.2");
        assert_eq!(ticks_to_decimal_str(1, 1e-8).unwrap(), "0.00000001");
        assert!(ticks_to_decimal_str(1, 0.0).is_err());
        assert!(ticks_to_decimal_str(1, f64::NAN).is_err());
    }

    #[test]
    fn decimals_of_steps() {
        assert_eq!(decimals_for_step(0.01).unwrap(), 2);
        assert_eq!(decimals_for_step(0.1).unwrap(), 1);
        assert_eq!(decimals_for_step(0.00001).unwrap(), 5);
        assert_eq!(decimals_for_step(1.0).unwrap(), 0);
        assert_eq!(decimals_for_step(5.0).unwrap(), 0);
        assert_eq!(decimals_for_step(0.25).unwrap(), 2);
        assert!(decimals_for_step(-0.1).is_err());
        assert!(decimals_for_step(f64::INFINITY).is_err());
        assert!(decimals_for_step(1e-40).is_err());
    }

    #[test]
    fn decimal_round_trip() {
        for &(tick, max) in &[(0.01, 10_000_000i64), (0.1, 1_000_000), (0.00001, 100_000)] {
            let d = decimals_for_step(tick).unwrap();
            for ticks in (-max..max).step_by(7919) {
                let text = ticks_to_decimal_str(ticks, tick).unwrap();
                let parsed: f64 = text.parse().unwrap();
                assert_eq!((parsed / tick).round() as i64, ticks, "{text}");
                assert_eq!(text.split_once('.').map_or(0, |(_, f)| f.len()), d as usize);
            }
        }
    }

    fn two_level_book(bid: f64, ask: f64, step: f64) -> OrderBook {
        let mut book = OrderBook::new(0.01, 0.001).unwrap();
        book.apply_snapshot(&[(bid, 1.0), (bid - step, 1.0)], &[(ask, 1.0), (ask + step, 1.0)], 1)
            .unwrap();
        book
    }

    #[test]
    fn entry_and_exit_spreads() {
        let cheap = two_level_book(99.99, 100.0, 0.01);
        let rich = two_level_book(100.10, 100.11, 0.01);
        // buy 1 at 100.00, sell 1 at 100.10, no fees: 10 bps
        let entry = entry_spread_bps(&cheap, &rich, 1.0, 0.0, 0.0).unwrap().unwrap();
        assert!((entry - 10.0).abs() < 1e-9, "{entry}");
        // 2 units walk a level on each side: buy avg 100.005, sell avg 100.095
        let entry = entry_spread_bps(&cheap, &rich, 2.0, 0.001, 0.0005).unwrap().unwrap();
        let expected = (100.095 * (1.0 - 0.0005) - 100.005 * 1.001) / 100.005 * 1e4;
        assert!((entry - expected).abs() < 1e-9, "{entry} {expected}");
        // unwind: sell on rich (long) at 100.10, buy back on cheap (short) at 100.00
        let exit = exit_spread_bps(&rich, &cheap, 1.0, 0.0, 0.0).unwrap().unwrap();
        assert!((exit - 10.0).abs() < 1e-9, "{exit}");
        // too shallow or invalid: None
        assert_eq!(entry_spread_bps(&cheap, &rich, 3.0, 0.0, 0.0).unwrap(), None);
        let mut gapped = two_level_book(99.99, 100.0, 0.01);
        gapped.apply_update(&[], &[], 5, 6, None).unwrap();
        assert!(!gapped.is_valid());
        assert_eq!(entry_spread_bps(&gapped, &rich, 1.0, 0.0, 0.0).unwrap(), None);
        assert_eq!(exit_spread_bps(&rich, &gapped, 1.0, 0.0, 0.0).unwrap(), None);
        assert!(entry_spread_bps(&cheap, &rich, 0.0, 0.0, 0.0).is_err());
        assert!(exit_spread_bps(&rich, &cheap, 1.0, f64::NAN, 0.0).is_err());
    }

    #[test]
    fn best_cross_picks_the_better_direction_with_its_prices() {
        let cheap = two_level_book(99.99, 100.0, 0.01);
        let rich = two_level_book(100.10, 100.11, 0.01);
        // buying on `cheap` and selling on `rich` earns; either argument order finds it
        for (a, b, buy_on_a) in [(&cheap, &rich, true), (&rich, &cheap, false)] {
            let x = best_cross(a, b, 2.0, 0.001, 0.001).unwrap().unwrap();
            let (buy_fee, sell_fee) = (0.001, 0.001);
            let expected = entry_spread_bps(&cheap, &rich, 2.0, buy_fee, sell_fee).unwrap().unwrap();
            assert_eq!(x.buy_on_a, buy_on_a);
            assert!((x.spread_bps - expected).abs() < 1e-12, "{} {expected}", x.spread_bps);
            assert!((x.buy_avg - 100.005).abs() < 1e-9 && (x.sell_avg - 100.095).abs() < 1e-9);
            assert!((x.buy_slippage_bps - 0.005 / 100.0 * 1e4).abs() < 1e-9);
            assert!((x.sell_slippage_bps - 0.005 / 100.10 * 1e4).abs() < 1e-9);
            assert_eq!((x.buy_best_ticks, x.sell_best_ticks), (10_000, 10_010));
        }
        // same book both sides: both directions lose the spread; a-buy wins the tie
        let x = best_cross(&cheap, &cheap, 1.0, 0.0, 0.0).unwrap().unwrap();
        assert!(x.buy_on_a && x.spread_bps < 0.0);
        // too shallow for both, or an invalid book: None; bad qty or fee: an error
        assert_eq!(best_cross(&cheap, &rich, 3.0, 0.0, 0.0).unwrap(), None);
        let mut gapped = two_level_book(99.99, 100.0, 0.01);
        gapped.apply_update(&[], &[], 5, 6, None).unwrap();
        assert_eq!(best_cross(&gapped, &rich, 1.0, 0.0, 0.0).unwrap(), None);
        assert!(best_cross(&cheap, &rich, f64::NAN, 0.0, 0.0).is_err());
        assert!(best_cross(&cheap, &rich, 1.0, 0.0, f64::INFINITY).is_err());
    }

    #[test]
    fn decimal_step_formats_and_counts_exactly() {
        let lot = DecimalStep::new(0.00001).unwrap();
        assert_eq!(lot.format(1234).unwrap(), ticks_to_decimal_str(1234, 0.00001).unwrap());
        assert_eq!(lot.format(1234).unwrap(), "0.01234");
        assert_eq!(lot.count(0.01234).unwrap(), 1234);
        let err = lot.count(0.012345).unwrap_err().to_string();
        assert!(err.contains("0.012345") && err.contains("0.00001"), "{err}");
        assert!(lot.count(f64::NAN).is_err() && lot.count(0.0).is_err());
        let tick = DecimalStep::new(0.1).unwrap();
        assert_eq!(tick.format(600_001).unwrap(), "60000.1");
        assert!(matches!(tick.format(i64::MAX), Ok(_) | Err(PricingError::Overflow { .. })));
        assert!(DecimalStep::new(0.0).is_err());
    }

    #[test]
    fn format_scaled_and_value_match_the_plain_formulas() {
        fn reference(value: i128, decimals: u32) -> String {
            let sign = if value < 0 { "-" } else { "" };
            let magnitude = value.unsigned_abs();
            if decimals == 0 {
                return format!("{sign}{magnitude}");
            }
            let scale = 10u128.pow(decimals);
            format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale, width = decimals as usize)
        }
        let mut next = crate::testutil::xorshift64(0x9e37_79b9_7f4a_7c15u64);
        let edges = [0i128, 1, -1, 9, 10, 99, 100, i128::from(i64::MAX), i128::from(i64::MIN), i128::MAX, i128::MIN + 1];
        for decimals in 0..=MAX_DECIMALS {
            for &v in &edges {
                assert_eq!(format_scaled(v, decimals), reference(v, decimals), "{v} {decimals}");
            }
            for _ in 0..200 {
                let v = i128::from(next() as i64) >> (next() % 60);
                assert_eq!(format_scaled(v, decimals), reference(v, decimals), "{v} {decimals}");
            }
        }
        for step in [0.01, 0.1, 0.00001, 0.001, 1.0, 0.5, 0.25, 1e-8, 5.0] {
            let grid = DecimalStep::new(step).unwrap();
            for _ in 0..2_000 {
                let n = (next() % 2_000_000_000_000) as i64 - 1_000_000_000_000;
                let parsed: f64 = grid.format(n).unwrap().parse().unwrap();
                assert_eq!(grid.value(n).unwrap(), parsed, "{n} * {step}");
            }
        }
    }

    /// 150 USDT in steps of 0.5, 10 bps taker fees each side, any spread above -100 bps.
    fn entry_params() -> ArbEntryParams {
        ArbEntryParams {
            notional: 150.0,
            step: 0.5,
            min_notional: 5.0,
            a_taker_fee: 0.001,
            b_taker_fee: 0.001,
            threshold_bps: -100.0,
            slippage_tolerance: 0.002,
        }
    }

    #[test]
    fn arb_entry_sizes_prices_and_thresholds() {
        let cheap = two_level_book(99.99, 100.0, 0.01);
        let rich = two_level_book(100.10, 100.11, 0.01);
        let params = entry_params();
        // 150 / mid 99.995 = 1.50 -> 1.5 (three steps of 0.5); buy on `cheap` (a)
        let x = arb_entry(&cheap, &rich, &params).unwrap().unwrap();
        assert_eq!(x.qty, 1.5);
        let direct = best_cross(&cheap, &rich, 1.5, 0.001, 0.001).unwrap().unwrap();
        assert_eq!(x.cross, direct);
        // ceil(10000 * 1.002 - 1e-9) = 10020 ticks
        assert_eq!(x.buy_limit_ticks, Some(10_020));
        // above the threshold: no limit price
        let strict = ArbEntryParams { threshold_bps: direct.spread_bps + 0.01, ..params };
        assert_eq!(arb_entry(&cheap, &rich, &strict).unwrap().unwrap().buy_limit_ticks, None);
        // at the threshold exactly: an opportunity
        let exact = ArbEntryParams { threshold_bps: direct.spread_bps, ..params };
        assert!(arb_entry(&cheap, &rich, &exact).unwrap().unwrap().buy_limit_ticks.is_some());
        // too small for one step, or below the min notional: an error naming the figures
        let tiny = ArbEntryParams { notional: 10.0, ..params };
        let err = arb_entry(&cheap, &rich, &tiny).unwrap_err().to_string();
        assert!(err.contains("position size 10") && err.contains("min notional 5"), "{err}");
        let below = ArbEntryParams { min_notional: 200.0, ..params };
        assert!(matches!(arb_entry(&cheap, &rich, &below), Err(PricingError::BelowMinNotional { .. })));
        // an invalid book or too thin for the size: None
        let mut gapped = two_level_book(99.99, 100.0, 0.01);
        gapped.apply_update(&[], &[], 5, 6, None).unwrap();
        assert_eq!(arb_entry(&gapped, &rich, &params).unwrap(), None);
        let deep = ArbEntryParams { notional: 1_000.0, ..params };
        assert_eq!(arb_entry(&cheap, &rich, &deep).unwrap(), None);
    }

    #[test]
    fn arb_entry_slippage_is_bounded_and_the_limit_never_saturates() {
        let cheap = two_level_book(99.99, 100.0, 0.01);
        let rich = two_level_book(100.10, 100.11, 0.01);
        let params = entry_params();
        assert_eq!(params.validate(), Ok(()));
        for slip in [1.0, 1e14, 1e300, f64::INFINITY, f64::NAN, -0.1] {
            let bad = ArbEntryParams { slippage_tolerance: slip, ..params };
            let err = bad.validate().unwrap_err();
            assert!(matches!(err, PricingError::OutOfRange { field: "slippage_tolerance", .. }), "{err}");
            // unvalidated: the limit is range-checked before the cast, not saturated to i64::MAX
            if slip.is_nan() || slip > 1e10 {
                assert!(
                    matches!(arb_entry(&cheap, &rich, &bad), Err(PricingError::OutOfRange { field: "buy_limit_ticks", .. })),
                    "{slip}"
                );
            }
        }
        assert!(ArbEntryParams { slippage_tolerance: 0.999, ..params }.validate().is_ok());
    }

    #[test]
    fn basis_and_funding() {
        assert!((basis_bps(101.0, 100.0).unwrap() - 100.0).abs() < 1e-9);
        assert!(basis_bps(101.0, 0.0).is_err());
        assert!((annualized_funding_rate(0.0001, 8.0).unwrap() - 0.1095).abs() < 1e-12);
        assert!(annualized_funding_rate(0.0001, 0.0).is_err());
        // short 1 BTC at 60000 with +0.01% funding for 3 intervals earns 18 USDT
        let pnl = expected_funding_pnl(-1.0, 60_000.0, 0.0001, 3.0).unwrap();
        assert!((pnl - 18.0).abs() < 1e-9);
        assert!(expected_funding_pnl(1.0, f64::NAN, 0.0001, 1.0).is_err());
        let err = basis_bps(-1.0, 100.0).unwrap_err().to_string();
        assert!(err.contains("perp_price") && err.contains("-1"), "{err}");
    }
}
