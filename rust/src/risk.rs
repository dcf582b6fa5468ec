//! Pre-trade risk checks of one order against a strategy's limits (DESIGN.md "Risk").
//!
//! Every order passes [`PreTradeLimits::check`] before it reaches a venue. Limits of 0 are off.
//! Units: notionals in quote currency, prices in quote currency per base unit (per contract for
//! inverse perps), quantities in base units or contracts, price band in bps of the mid.
//!
//! Notional of `qty` at `price`: `|qty| * contract_size * price` for spot and linear perps,
//! `|qty| * contract_size` for inverse perps (contracts are worth a fixed quote amount; Binance
//! COIN-M "contract size" 100 USD for BTC).
//!
//! Pure Rust: no Python here; the bindings live in `python.rs`.

use crate::book::OrderBook;

/// The limits; `0` switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreTradeLimits {
    /// Largest single order, quote currency.
    pub max_order_notional: f64,
    /// Largest absolute position per instrument after the order, quote currency (checked only
    /// when the order increases the absolute position).
    pub max_position_notional: f64,
    /// How far a limit price may be through the mid, bps (buy above / sell below).
    pub price_band_bps: f64,
    /// Open orders of the strategy before this one must be below this.
    pub max_open_orders: u64,
}

/// One order as the check sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderCheck {
    /// `+1.0` buy, `-1.0` sell.
    pub side_sign: f64,
    /// Order quantity, base units or contracts (> 0).
    pub qty: f64,
    /// Limit price, or `None` for a market order (valued at the mid).
    pub price: Option<f64>,
    /// The strategy's signed position in the instrument before the order.
    pub position_qty: f64,
    /// The strategy's open orders before this one.
    pub open_orders: u64,
    /// Contract size (1 for spot).
    pub contract_size: f64,
    /// Inverse perp: notional is `|qty| * contract_size`, independent of price.
    pub inverse: bool,
}

/// Which limit an order breached, with the figures a message needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RiskBreach {
    /// The instrument's book is invalid (sequence gap, crossed, no snapshot).
    BookInvalid,
    /// A side of the book is empty: no mid to value the order.
    NoMid,
    /// `notional > limit`.
    OrderNotional { notional: f64, limit: f64 },
    /// Position notional after the order `> limit`.
    PositionNotional { notional: f64, limit: f64 },
    /// The limit price is `through_bps` through the mid, `> limit`.
    PriceBand { price: f64, through_bps: f64, limit: f64 },
    /// `open >= limit`.
    OpenOrders { open: u64, limit: u64 },
    /// The order itself is malformed (`qty` not finite and > 0, `side_sign` not ±1, `price` not
    /// finite and > 0, `contract_size` not finite and > 0, `position_qty` not finite): rejected
    /// before any limit, so a NaN never passes a `>` comparison. `requirement` words the rule.
    BadOrder { field: &'static str, value: f64, requirement: &'static str },
}

impl OrderCheck {
    /// The order's own fields (see [`RiskBreach::BadOrder`]).
    pub fn validate(&self) -> Result<(), RiskBreach> {
        let bad = |field, value, requirement| Err(RiskBreach::BadOrder { field, value, requirement });
        if !(self.side_sign == 1.0 || self.side_sign == -1.0) {
            return bad("side_sign", self.side_sign, "must be +1 (buy) or -1 (sell)");
        }
        if !(self.qty.is_finite() && self.qty > 0.0) {
            return bad("qty", self.qty, "must be finite and > 0");
        }
        if let Some(price) = self.price {
            if !(price.is_finite() && price > 0.0) {
                return bad("price", price, "must be finite and > 0");
            }
        }
        if !(self.contract_size.is_finite() && self.contract_size > 0.0) {
            return bad("contract_size", self.contract_size, "must be finite and > 0");
        }
        if !self.position_qty.is_finite() {
            return bad("position_qty", self.position_qty, "must be finite");
        }
        Ok(())
    }
}

impl OrderCheck {
    fn notional(&self, qty: f64, price: f64) -> f64 {
        if self.inverse {
            qty.abs() * self.contract_size
        } else {
            qty.abs() * self.contract_size * price
        }
    }
}

impl PreTradeLimits {
    /// `Ok(())` when `order` is within every limit on `book` now, else the first breach in this
    /// order: a malformed order ([`RiskBreach::BadOrder`]), book invalid, no mid, order notional,
    /// position notional, price band, open orders.
    pub fn check(&self, book: &OrderBook, order: &OrderCheck) -> Result<(), RiskBreach> {
        order.validate()?;
        if !book.is_valid() {
            return Err(RiskBreach::BookInvalid);
        }
        let mid = book.mid().ok_or(RiskBreach::NoMid)?;
        if self.max_order_notional > 0.0 {
            let notional = order.notional(order.qty, order.price.unwrap_or(mid));
            if notional > self.max_order_notional {
                return Err(RiskBreach::OrderNotional { notional, limit: self.max_order_notional });
            }
        }
        if self.max_position_notional > 0.0 {
            let after = order.position_qty + order.qty * order.side_sign;
            if after.abs() > order.position_qty.abs() {
                let notional = order.notional(after, mid);
                if notional > self.max_position_notional {
                    return Err(RiskBreach::PositionNotional { notional, limit: self.max_position_notional });
                }
            }
        }
        if self.price_band_bps > 0.0 {
            if let Some(price) = order.price {
                let through_bps = (price - mid) / mid * 1e4 * order.side_sign;
                if through_bps > self.price_band_bps {
                    return Err(RiskBreach::PriceBand { price, through_bps, limit: self.price_band_bps });
                }
            }
        }
        if self.max_open_orders > 0 && order.open_orders >= self.max_open_orders {
            return Err(RiskBreach::OpenOrders { open: order.open_orders, limit: self.max_open_orders });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(bid: f64, ask: f64) -> OrderBook {
        let mut book = OrderBook::new(0.01, 0.001).unwrap();
        book.apply_snapshot(&[(bid, 5.0)], &[(ask, 5.0)], 1).unwrap();
        book
    }

    const OFF: PreTradeLimits =
        PreTradeLimits { max_order_notional: 0.0, max_position_notional: 0.0, price_band_bps: 0.0, max_open_orders: 0 };

    fn order(side_sign: f64, qty: f64, price: Option<f64>) -> OrderCheck {
        OrderCheck { side_sign, qty, price, position_qty: 0.0, open_orders: 0, contract_size: 1.0, inverse: false }
    }

    #[test]
    fn each_limit_and_its_boundary() {
        let b = book(99.0, 101.0); // mid 100
        assert_eq!(OFF.check(&b, &order(1.0, 1e9, Some(1e9))), Ok(()));
        // order notional: 2 * 100 = 200 (limit price), market at the mid
        let lim = PreTradeLimits { max_order_notional: 200.0, ..OFF };
        assert_eq!(lim.check(&b, &order(1.0, 2.0, Some(100.0))), Ok(()));
        assert_eq!(
            lim.check(&b, &order(1.0, 2.0, Some(100.5))),
            Err(RiskBreach::OrderNotional { notional: 201.0, limit: 200.0 })
        );
        assert!(lim.check(&b, &order(-1.0, 2.01, None)).is_err());
        // position notional: only when the order grows the absolute position
        let lim = PreTradeLimits { max_position_notional: 300.0, ..OFF };
        let mut o = order(1.0, 2.0, Some(100.0));
        o.position_qty = 2.0; // 4 * 100 = 400 > 300
        assert_eq!(lim.check(&b, &o), Err(RiskBreach::PositionNotional { notional: 400.0, limit: 300.0 }));
        o.side_sign = -1.0; // reduces to 0
        assert_eq!(lim.check(&b, &o), Ok(()));
        o.qty = 6.0; // flips to -4: larger than 2 again
        assert!(matches!(lim.check(&b, &o), Err(RiskBreach::PositionNotional { .. })));
        // price band: buy above / sell below the mid
        let lim = PreTradeLimits { price_band_bps: 50.0, ..OFF };
        assert_eq!(lim.check(&b, &order(1.0, 1.0, Some(100.5))), Ok(()));
        assert!(matches!(lim.check(&b, &order(1.0, 1.0, Some(100.6))), Err(RiskBreach::PriceBand { .. })));
        assert_eq!(lim.check(&b, &order(-1.0, 1.0, Some(100.6))), Ok(()));
        assert!(matches!(lim.check(&b, &order(-1.0, 1.0, Some(99.4))), Err(RiskBreach::PriceBand { .. })));
        assert_eq!(lim.check(&b, &order(1.0, 1.0, None)), Ok(()));
        // open orders
        let lim = PreTradeLimits { max_open_orders: 2, ..OFF };
        let mut o = order(1.0, 1.0, None);
        o.open_orders = 1;
        assert_eq!(lim.check(&b, &o), Ok(()));
        o.open_orders = 2;
        assert_eq!(lim.check(&b, &o), Err(RiskBreach::OpenOrders { open: 2, limit: 2 }));
    }

    #[test]
    fn inverse_notional_ignores_price_and_books_must_be_usable() {
        let b = book(99.0, 101.0);
        let lim = PreTradeLimits { max_order_notional: 1_000.0, ..OFF };
        let mut o = order(1.0, 11.0, Some(100.0));
        o.inverse = true;
        o.contract_size = 100.0; // 11 contracts of 100 USD
        assert_eq!(lim.check(&b, &o), Err(RiskBreach::OrderNotional { notional: 1_100.0, limit: 1_000.0 }));
        let mut gapped = book(99.0, 101.0);
        gapped.apply_update(&[], &[], 5, 6, None).unwrap();
        assert_eq!(OFF.check(&gapped, &order(1.0, 1.0, None)), Err(RiskBreach::BookInvalid));
        let mut one_sided = OrderBook::new(0.01, 0.001).unwrap();
        one_sided.apply_snapshot(&[(99.0, 1.0)], &[], 1).unwrap();
        assert_eq!(OFF.check(&one_sided, &order(1.0, 1.0, None)), Err(RiskBreach::NoMid));
    }

    #[test]
    fn malformed_orders_fail_closed() {
        let b = book(99.0, 101.0);
        let lim = PreTradeLimits { max_order_notional: 1_000.0, max_position_notional: 1_000.0, ..OFF };
        let field = |o: OrderCheck| match lim.check(&b, &o) {
            Err(RiskBreach::BadOrder { field, .. }) => field,
            other => panic!("{o:?} -> {other:?}"),
        };
        let ok = order(1.0, 1.0, Some(100.0));
        assert_eq!(lim.check(&b, &ok), Ok(()));
        for qty in [f64::NAN, -5.0, 0.0, f64::INFINITY] {
            assert_eq!(field(OrderCheck { qty, ..ok }), "qty");
        }
        for price in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            assert_eq!(field(OrderCheck { price: Some(price), ..ok }), "price");
        }
        for contract_size in [f64::NAN, -1.0, 0.0] {
            assert_eq!(field(OrderCheck { contract_size, ..ok }), "contract_size");
        }
        for side_sign in [f64::NAN, 0.0, 2.0, 0.5] {
            assert_eq!(field(OrderCheck { side_sign, ..ok }), "side_sign");
        }
        assert_eq!(field(OrderCheck { position_qty: f64::NAN, ..ok }), "position_qty");
        // even with every limit off
        assert!(matches!(OFF.check(&b, &order(1.0, f64::NAN, None)), Err(RiskBreach::BadOrder { .. })));
    }
}
