//! An order's price and quantity checked against the instrument's grid and converted to whole
//! ticks / lots, exact decimal wire strings and the floats nearest them -- `OrderRequest.create`
//! (`python/cexarb/venues/base.py`) in one call.
//!
//! Units: `qty` base units (or contracts where the instrument counts contracts), `lot_size` in
//! the same unit; `price` quote currency per base unit (per contract), `tick_size` the same.
//! Grid tolerance: within 1e-6 of a whole tick/lot plus 1e-12 relative float noise, as the book
//! (`book.rs`) and the Python checks before this.

use crate::pricing::{self, PricingError};

/// Grid check tolerance, in ticks / lots.
const GRID_TOL: f64 = 1e-6;

/// Largest lot / tick count accepted: the exact decimal arithmetic works on `i64` counts.
const MAX_COUNT: f64 = 9.0e18;

/// Which check an order failed; the binding words the message with the caller's own values
/// (`repr` of the Python objects), the field named first.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderFieldError {
    /// `qty` NaN, infinite or `<= 0`.
    QtyNotPositive,
    /// `qty / lot_size` is not within tolerance of a whole number `>= 1` (or too large).
    QtyOffLot,
    /// Both `price` and `price_ticks` given.
    PriceAndTicks,
    /// `price_ticks <= 0`.
    TicksNotPositive,
    /// `price_ticks` not an integer (a float such as `5.7`: never truncated).
    TicksNotInteger,
    /// `price_ticks` an integer beyond the `i64` counts.
    TicksOutOfRange,
    /// A limit order without a price.
    PriceRequired,
    /// `price` NaN, infinite or `<= 0`.
    PriceNotPositive,
    /// `price / tick_size` is not within tolerance of a whole number (or too large).
    PriceOffTick,
    /// `price` on the grid but below one tick (it would be sent as a price of 0).
    PriceBelowOneTick,
    /// Formatting the wire strings failed (bad tick/lot size, overflow).
    Wire(PricingError),
}

/// The validated order: counts, wire strings, and the floats nearest the wire decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFields {
    pub qty_lots: i64,
    /// None: a market order (no price given).
    pub price_ticks: Option<i64>,
    pub wire_qty: String,
    pub wire_price: Option<String>,
    pub qty: f64,
    pub price: Option<f64>,
}

/// The price of an order as its caller gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceInput {
    /// No price: a market order, unless `limit_required`.
    None,
    /// A float price, converted to ticks within the grid tolerance.
    Price(f64),
    /// Whole ticks (exact; no rounding).
    Ticks(i64),
}

/// `round()` of Python: ties to even.
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// Whole count of `value / step` within the grid tolerance: `Some(count)` or None off the grid.
fn grid_count(value: f64, step: f64) -> Option<(f64, f64)> {
    let exact = value / step;
    let whole = round_half_even(exact);
    if !exact.is_finite() || (exact - whole).abs() > GRID_TOL.max(exact * 1e-12) || whole.abs() >= MAX_COUNT {
        return None;
    }
    Some((exact, whole))
}

/// Validates and converts an order (see the module docs): [`qty_lots`], then [`price_ticks`],
/// then [`wire`].
///
/// `price_ticks` given as [`PriceInput::Ticks`] must be `>= 1`, and a float price must be at
/// least one tick (`1e-9` on a 0.01 grid is within the tolerance of 0 ticks: rejected, never
/// sent as `"0.00"`). `limit_required`: the caller asked for a limit order, so a price is needed.
///
/// Errors: the first failed check, in the order qty, price, wire formatting; a `lot_size` /
/// `tick_size` not finite and `> 0` is [`OrderFieldError::Wire`] with
/// [`PricingError::NotPositive`] naming it, checked before the grid it defines.
pub fn order_fields(
    qty: f64,
    lot_size: f64,
    price: PriceInput,
    tick_size: f64,
    limit_required: bool,
) -> Result<OrderFields, OrderFieldError> {
    let lots = qty_lots(qty, lot_size)?;
    let ticks = price_ticks(price, tick_size, limit_required)?;
    wire(lots, lot_size, ticks, tick_size)
}

/// `qty` (base units or contracts) as whole lots of `lot_size`: finite, `> 0`, at least one lot,
/// on the grid within tolerance.
pub fn qty_lots(qty: f64, lot_size: f64) -> Result<i64, OrderFieldError> {
    pricing::positive("lot_size", lot_size).map_err(OrderFieldError::Wire)?;
    if !(qty > 0.0 && qty != f64::INFINITY) {
        return Err(OrderFieldError::QtyNotPositive);
    }
    match grid_count(qty, lot_size) {
        Some((_, whole)) if whole > 0.0 => Ok(whole as i64),
        _ => Err(OrderFieldError::QtyOffLot),
    }
}

/// The order's limit price as whole ticks of `tick_size` (None: market).
pub fn price_ticks(price: PriceInput, tick_size: f64, limit_required: bool) -> Result<Option<i64>, OrderFieldError> {
    match price {
        PriceInput::Ticks(t) if t <= 0 => Err(OrderFieldError::TicksNotPositive),
        PriceInput::Ticks(t) => Ok(Some(t)),
        PriceInput::None if limit_required => Err(OrderFieldError::PriceRequired),
        PriceInput::None => Ok(None),
        PriceInput::Price(p) => {
            if !(p > 0.0 && p != f64::INFINITY) {
                return Err(OrderFieldError::PriceNotPositive);
            }
            pricing::positive("tick_size", tick_size).map_err(OrderFieldError::Wire)?;
            match grid_count(p, tick_size) {
                Some((_, whole)) if whole >= 1.0 => Ok(Some(whole as i64)),
                Some(_) => Err(OrderFieldError::PriceBelowOneTick),
                None => Err(OrderFieldError::PriceOffTick),
            }
        }
    }
}

/// The exact decimal wire strings of `lots * lot_size` and `ticks * tick_size`
/// ([`pricing::ticks_to_decimal_str`]) and the floats nearest them.
pub fn wire(lots: i64, lot_size: f64, ticks: Option<i64>, tick_size: f64) -> Result<OrderFields, OrderFieldError> {
    let wire_qty = pricing::ticks_to_decimal_str(lots, lot_size).map_err(OrderFieldError::Wire)?;
    let fqty = parse_wire(&wire_qty, lots, lot_size)?;
    let (wire_price, fprice) = match ticks {
        Some(t) => {
            let wire = pricing::ticks_to_decimal_str(t, tick_size).map_err(OrderFieldError::Wire)?;
            let value = parse_wire(&wire, t, tick_size)?;
            (Some(wire), Some(value))
        }
        None => (None, None),
    };
    Ok(OrderFields { qty_lots: lots, price_ticks: ticks, wire_qty, wire_price, qty: fqty, price: fprice })
}

fn parse_wire(text: &str, n: i64, step: f64) -> Result<f64, OrderFieldError> {
    text.parse::<f64>()
        .map_err(|_| OrderFieldError::Wire(PricingError::Overflow { ticks: n, tick_size: step }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_market_and_ticks() {
        let f = order_fields(0.16174, 0.00001, PriceInput::Price(61837.63), 0.01, false).unwrap();
        assert_eq!((f.qty_lots, f.price_ticks), (16174, Some(6183763)));
        assert_eq!((f.wire_qty.as_str(), f.wire_price.as_deref()), ("0.16174", Some("61837.63")));
        assert_eq!((f.qty, f.price), (0.16174, Some(61837.63)));
        let m = order_fields(3.0, 1.0, PriceInput::None, 0.1, false).unwrap();
        assert_eq!((m.wire_qty.as_str(), m.wire_price, m.qty, m.price), ("3", None, 3.0, None));
        let t = order_fields(0.162, 0.001, PriceInput::Ticks(618001), 0.1, true).unwrap();
        assert_eq!((t.wire_price.as_deref(), t.price), (Some("61800.1"), Some(61800.1)));
    }

    #[test]
    fn each_check() {
        use OrderFieldError::*;
        let cases = [
            (0.000015, PriceInput::None, false, QtyOffLot),
            (-1.0, PriceInput::None, false, QtyNotPositive),
            (f64::NAN, PriceInput::None, false, QtyNotPositive),
            (f64::INFINITY, PriceInput::None, false, QtyNotPositive),
            (0.000004, PriceInput::None, false, QtyOffLot), // rounds to 0 lots
            (1e30, PriceInput::None, false, QtyOffLot),     // beyond the i64 counts
            (0.001, PriceInput::Price(61837.635), false, PriceOffTick),
            (0.001, PriceInput::Price(f64::INFINITY), false, PriceNotPositive),
            (0.001, PriceInput::Price(0.0), false, PriceNotPositive),
            (0.001, PriceInput::None, true, PriceRequired),
            (0.001, PriceInput::Ticks(0), true, TicksNotPositive),
        ];
        for (qty, price, limit, err) in cases {
            assert_eq!(order_fields(qty, 0.00001, price, 0.01, limit), Err(err.clone()), "{qty} {price:?}");
        }
        assert!(matches!(
            order_fields(1.0, 0.001, PriceInput::Ticks(5), f64::NAN, false),
            Err(OrderFieldError::Wire(_))
        ));
    }

    #[test]
    fn python_rounding_ties_to_even_and_tolerance() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-2.5), -2.0);
        assert_eq!(round_half_even(2.4999), 2.0);
        // 1e-7 lot off the grid is within the 1e-6 tolerance
        let f = order_fields(0.0010000001, 0.001, PriceInput::None, 0.01, false).unwrap();
        assert_eq!(f.qty_lots, 1);
        // a tiny price within the tolerance of 0 ticks is not a price of 0: rejected
        assert_eq!(
            order_fields(1.0, 1.0, PriceInput::Price(1e-9), 0.01, false),
            Err(OrderFieldError::PriceBelowOneTick)
        );
        assert_eq!(order_fields(1.0, 1.0, PriceInput::Price(0.01), 0.01, false).unwrap().price_ticks, Some(1));
    }

    #[test]
    fn bad_steps_are_named_before_the_grid() {
        for lot in [0.0, -0.001, f64::NAN, f64::INFINITY] {
            match order_fields(1.0, lot, PriceInput::None, 0.01, false) {
                Err(OrderFieldError::Wire(e @ PricingError::NotPositive { field: "lot_size", .. })) => {
                    assert!(e.to_string().starts_with("lot_size "), "{e}")
                }
                other => panic!("{lot}: {other:?}"),
            }
        }
        for tick in [0.0, -0.01, f64::NAN] {
            assert!(matches!(
                order_fields(1.0, 1.0, PriceInput::Price(1.0), tick, false),
                Err(OrderFieldError::Wire(PricingError::NotPositive { field: "tick_size", .. }))
            ));
        }
    }
}
