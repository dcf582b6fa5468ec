//! Hedge maths: hedge ratio, delta, rebalance size, EWMA volatility, rolling OLS beta.
//!
//! Units: quantities signed in base units (a short perp is negative), prices in quote currency
//! per base unit, volatility as a fraction per update.
//!
//! Pure Rust: no Python here; the bindings live in `python.rs`.

use thiserror::Error;

/// Errors of the hedge functions; each message names the field and its value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum HedgeError {
    #[error("{field} {value} must be finite")]
    NotFinite { field: &'static str, value: f64 },
    #[error("{field} {value} must be finite and > 0")]
    NotPositive { field: &'static str, value: f64 },
    #[error("{field} {value} must be finite and >= 0")]
    Negative { field: &'static str, value: f64 },
    #[error("window {window} must be >= 2 and <= {max}")]
    BadWindow { window: usize, max: usize },
}

/// Largest [`RollingOls`] window: two `f64` ring buffers of this many points (256 MiB).
pub const MAX_OLS_WINDOW: usize = 1 << 24;

fn finite(field: &'static str, value: f64) -> Result<f64, HedgeError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(HedgeError::NotFinite { field, value })
    }
}

fn positive(field: &'static str, value: f64) -> Result<f64, HedgeError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(HedgeError::NotPositive { field, value })
    }
}

fn non_negative(field: &'static str, value: f64) -> Result<f64, HedgeError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(HedgeError::Negative { field, value })
    }
}

/// Signed hedge ratio `-(perp_qty * perp_price) / (spot_qty * spot_price)`: the notional of the
/// hedge over the notional hedged, positive when the perp leg is on the opposite side of the
/// spot leg (long spot / short perp gives `+1.0` at equal notionals), negative when both legs
/// are on the same side (a perp on the wrong side doubles the delta instead of removing it, and
/// reads as a drift of about 2 from a target of 1). `None` when the spot notional is 0.
///
/// Quantities signed in base units (a short is negative), prices in quote per base unit.
///
/// Errors: any input not finite; the ratio not finite (overflow).
pub fn hedge_ratio(
    spot_qty: f64,
    spot_price: f64,
    perp_qty: f64,
    perp_price: f64,
) -> Result<Option<f64>, HedgeError> {
    finite("spot_qty", spot_qty)?;
    finite("spot_price", spot_price)?;
    finite("perp_qty", perp_qty)?;
    finite("perp_price", perp_price)?;
    let spot_notional = spot_qty * spot_price;
    if spot_notional == 0.0 {
        return Ok(None);
    }
    let ratio = -(perp_qty * perp_price) / spot_notional;
    finite("hedge_ratio", ratio)?;
    // -0.0 (no perp leg) reads as 0.0
    Ok(Some(ratio + 0.0))
}

/// Net delta in base units: `spot_qty + perp_qty` (signed; a short perp is negative).
///
/// Errors: an input not finite.
pub fn delta_base(spot_qty: f64, perp_qty: f64) -> Result<f64, HedgeError> {
    finite("spot_qty", spot_qty)?;
    finite("perp_qty", perp_qty)?;
    Ok(spot_qty + perp_qty)
}

/// Net delta in quote currency: `(spot_qty + perp_qty) * price`.
///
/// Errors: an input not finite.
pub fn delta_quote(spot_qty: f64, perp_qty: f64, price: f64) -> Result<f64, HedgeError> {
    finite("price", price)?;
    Ok(delta_base(spot_qty, perp_qty)? * price)
}

/// Distance of the hedge ratio from its target: `|current_ratio - target_ratio|`.
///
/// Errors: an input not finite.
pub fn hedge_drift(current_ratio: f64, target_ratio: f64) -> Result<f64, HedgeError> {
    finite("current_ratio", current_ratio)?;
    finite("target_ratio", target_ratio)?;
    Ok((current_ratio - target_ratio).abs())
}

/// Relative slack when counting whole lots, so `0.003 / 0.001 = 2.9999999999999996` is 3 lots.
const LOT_EPSILON: f64 = 1e-9;

/// Signed order qty (base units) that removes `delta_base`: `-delta_base` rounded toward zero to
/// a whole number of `lot_size` lots, so the hedge never overshoots (`|qty| <= |delta_base|`
/// exactly, while `0.003 / 0.001` still gives 3 lots despite float noise); `0.0` when the order's
/// notional `|qty| * price` is below `min_notional` (the venue would reject it).
///
/// The result is the nearest float to the exact decimal `lots * lot_size` (`3 * 0.1` → `0.3`).
///
/// Errors: `delta_base` not finite; `lot_size` or `price` not finite or `<= 0`; `min_notional`
/// not finite or `< 0`.
pub fn rebalance_qty(
    delta_base: f64,
    lot_size: f64,
    min_notional: f64,
    price: f64,
) -> Result<f64, HedgeError> {
    finite("delta_base", delta_base)?;
    positive("lot_size", lot_size)?;
    non_negative("min_notional", min_notional)?;
    positive("price", price)?;
    let target = delta_base.abs();
    let lots_exact = target / lot_size;
    if !lots_exact.is_finite() {
        return Err(HedgeError::NotFinite { field: "delta_base / lot_size", value: lots_exact });
    }
    // candidates, largest first: with the slack, without it, one lot less; the first that does
    // not exceed the delta wins (bounded: no loop on huge lot counts)
    let with_slack = (lots_exact + LOT_EPSILON * lots_exact.max(1.0)).floor();
    let candidates = [with_slack, lots_exact.floor(), lots_exact.floor() - 1.0];
    let Some(magnitude) = candidates
        .into_iter()
        .filter(|&lots| lots >= 1.0)
        .map(|lots| lots_to_qty(lots, lot_size))
        .find(|&qty| qty <= target)
    else {
        return Ok(0.0);
    };
    if magnitude * price < min_notional {
        return Ok(0.0);
    }
    Ok(if delta_base > 0.0 { -magnitude } else { magnitude })
}

/// `lots * lot_size`, computed through the lot's decimal units when short (exact decimals).
fn lots_to_qty(lots: f64, lot_size: f64) -> f64 {
    if let Ok((units, decimals)) = crate::pricing::step_units(lot_size) {
        if decimals <= 15 {
            let total = lots * units as f64;
            if total < 9.0e15 {
                return total / 10f64.powi(decimals as i32);
            }
        }
    }
    lots * lot_size
}

/// Exponentially weighted volatility of log returns (J.P. Morgan/Reuters, RiskMetrics —
/// Technical Document, 4th ed., 1996, section 5.2.1):
///
/// `r_t = ln(p_t / p_{t-1})`, `var_t = λ·var_{t-1} + (1-λ)·r_t²`, `λ = 0.5^(1/halflife)`;
/// the first return initialises `var = r²`. The value is `sqrt(var)`, per update, as a fraction.
#[derive(Debug, Clone)]
pub struct EwmaVolatility {
    lambda: f64,
    last_price: Option<f64>,
    variance: Option<f64>,
    count: u64,
}

impl EwmaVolatility {
    /// `halflife` in updates. Errors: not finite or `<= 0`.
    pub fn new(halflife: f64) -> Result<Self, HedgeError> {
        positive("halflife", halflife)?;
        Ok(Self { lambda: 0.5f64.powf(1.0 / halflife), last_price: None, variance: None, count: 0 })
    }

    /// Decay factor `λ`.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Adds a price; returns the volatility (`None` before 2 prices).
    ///
    /// Errors (state unchanged): `price` not finite or `<= 0`.
    pub fn update(&mut self, price: f64) -> Result<Option<f64>, HedgeError> {
        positive("price", price)?;
        self.count += 1;
        if let Some(last) = self.last_price {
            let r = (price / last).ln();
            let r2 = r * r;
            self.variance = Some(match self.variance {
                Some(v) => self.lambda * v + (1.0 - self.lambda) * r2,
                None => r2,
            });
        }
        self.last_price = Some(price);
        Ok(self.value())
    }

    /// Current volatility `sqrt(var)`, `None` before 2 prices.
    pub fn value(&self) -> Option<f64> {
        self.variance.map(f64::sqrt)
    }

    /// Number of prices seen.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Least squares `y = alpha + beta·x` over the last `window` points.
///
/// Numerically stable running sums: the sums are of deviations from a shift `(kx, ky)`,
/// `Σ(x-kx)`, `Σ(y-ky)`, `Σ(x-kx)²`, `Σ(x-kx)(y-ky)`, with the shift re-chosen as the data point
/// nearest the window mean whenever the sums are recomputed from the ring buffer (every `window`
/// updates, and early when the window has moved far from the shift). Near the shift `x - kx` is
/// exact (Sterbenz), so prices like 60000 ± 0.01 keep full precision (the raw `Σx²/n - mean²`
/// cancels to noise there). Shift-invariant: beta and alpha are those of the raw points.
#[derive(Debug, Clone)]
pub struct RollingOls {
    window: usize,
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// Next slot to write.
    head: usize,
    len: usize,
    since_recompute: usize,
    kx: f64,
    ky: f64,
    sums: Sums,
}

/// Sums of deviations from the shift.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl Sums {
    fn add(&mut self, dx: f64, dy: f64) {
        self.sx += dx;
        self.sy += dy;
        self.sxx += dx * dx;
        self.sxy += dx * dy;
    }

    fn remove(&mut self, dx: f64, dy: f64) {
        self.sx -= dx;
        self.sy -= dy;
        self.sxx -= dx * dx;
        self.sxy -= dx * dy;
    }

    /// The first non-finite sum, named.
    fn non_finite(&self) -> Option<(&'static str, f64)> {
        [("sum x", self.sx), ("sum y", self.sy), ("sum x^2", self.sxx), ("sum x*y", self.sxy)]
            .into_iter()
            .find(|(_, v)| !v.is_finite())
    }
}

/// A window mean `mx²` beyond this many times `var(x)` (shifted units) triggers an early
/// recompute: the cancellation in `sxx/n - mx²` would cost more than ~1e-10 relative.
const SHIFT_DRIFT_LIMIT: f64 = 1e6;

/// `var(x)` at or below this fraction of the shifted `Σ(x-kx)²/n` is float noise: no beta.
const DEGENERATE_REL: f64 = 1e-12;

impl RollingOls {
    /// Errors: `window < 2` or `window > MAX_OLS_WINDOW` (2^24).
    pub fn new(window: usize) -> Result<Self, HedgeError> {
        if !(2..=MAX_OLS_WINDOW).contains(&window) {
            return Err(HedgeError::BadWindow { window, max: MAX_OLS_WINDOW });
        }
        Ok(Self {
            window,
            xs: vec![0.0; window],
            ys: vec![0.0; window],
            head: 0,
            len: 0,
            since_recompute: 0,
            kx: 0.0,
            ky: 0.0,
            sums: Sums::default(),
        })
    }

    /// Adds a point; returns beta (`None` with fewer than 2 points or `var(x) == 0` up to float
    /// noise).
    ///
    /// Errors (state unchanged): `x` or `y` not finite; a running sum not finite (overflow, e.g.
    /// `(x - kx)²` beyond `f64::MAX`).
    pub fn update(&mut self, x: f64, y: f64) -> Result<Option<f64>, HedgeError> {
        finite("x", x)?;
        finite("y", y)?;
        let (kx, ky) = if self.len == 0 { (x, y) } else { (self.kx, self.ky) };
        let (dx, dy) = (x - kx, y - ky);
        finite("x - shift", dx)?;
        finite("y - shift", dy)?;
        let mut sums = if self.len == 0 { Sums::default() } else { self.sums };
        let full = self.len == self.window;
        if full {
            if let (Some(&ox), Some(&oy)) = (self.xs.get(self.head), self.ys.get(self.head)) {
                sums.remove(ox - kx, oy - ky);
            }
        }
        sums.add(dx, dy);
        if let Some((field, value)) = sums.non_finite() {
            return Err(HedgeError::NotFinite { field, value });
        }
        // commit
        if let (Some(sx), Some(sy)) = (self.xs.get_mut(self.head), self.ys.get_mut(self.head)) {
            *sx = x;
            *sy = y;
        }
        if !full {
            self.len += 1;
        }
        self.kx = kx;
        self.ky = ky;
        self.sums = sums;
        self.head = (self.head + 1) % self.window;
        self.since_recompute += 1;
        if self.since_recompute >= self.window || self.shift_drifted() {
            self.recompute();
        }
        Ok(self.beta())
    }

    /// The window mean has moved so far from the shift that `sxx/n - mx²` loses precision.
    fn shift_drifted(&self) -> bool {
        if self.len < 2 || self.sums.sxx <= 0.0 {
            return false;
        }
        let n = self.len as f64;
        let mx = self.sums.sx / n;
        let var = self.sums.sxx / n - mx * mx;
        mx * mx > SHIFT_DRIFT_LIMIT * var
    }

    /// Sums recomputed from the buffer around a new shift: the point nearest the window mean in
    /// x (and, separately, in y). Kept as they were if the new sums would not be finite.
    fn recompute(&mut self) {
        self.since_recompute = 0;
        // the filled slots are the first `len` (before wrap) or all of them (after)
        let xs = self.xs.get(..self.len).unwrap_or(&[]);
        let ys = self.ys.get(..self.len).unwrap_or(&[]);
        let (Some(kx), Some(ky)) = (nearest_to_mean(xs), nearest_to_mean(ys)) else {
            return;
        };
        let mut sums = Sums::default();
        for (&x, &y) in xs.iter().zip(ys) {
            sums.add(x - kx, y - ky);
        }
        if sums.non_finite().is_none() {
            self.kx = kx;
            self.ky = ky;
            self.sums = sums;
        }
    }

    /// `(mean_x, mean_y, var_x, cov_xy)` (population moments, means in shifted units), `None`
    /// with < 2 points or `var(x)` at most `1e-12` of the shifted `Σ(x-kx)²/n` (float noise).
    fn moments(&self) -> Option<(f64, f64, f64, f64)> {
        if self.len < 2 {
            return None;
        }
        let n = self.len as f64;
        let s = &self.sums;
        let mean_x = s.sx / n;
        let mean_y = s.sy / n;
        let var_x = s.sxx / n - mean_x * mean_x;
        let cov = s.sxy / n - mean_x * mean_y;
        // also rejects NaN
        if var_x.is_nan() || var_x <= DEGENERATE_REL * (s.sxx / n) {
            return None;
        }
        Some((mean_x, mean_y, var_x, cov))
    }

    /// Slope of the current window.
    pub fn beta(&self) -> Option<f64> {
        self.moments().map(|(_, _, var_x, cov)| cov / var_x)
    }

    /// Intercept of the current window: `mean_y - beta * mean_x` (raw units).
    pub fn alpha(&self) -> Option<f64> {
        self.moments().map(|(mx, my, var_x, cov)| (self.ky + my) - cov / var_x * (self.kx + mx))
    }

    /// Number of points in the window (at most `window`).
    pub fn count(&self) -> usize {
        self.len
    }

    pub fn window(&self) -> usize {
        self.window
    }
}

/// The value of `values` nearest their mean (a running mean: no overflow on huge values); `None`
/// when empty.
fn nearest_to_mean(values: &[f64]) -> Option<f64> {
    let mut mean = 0.0;
    for (i, &v) in values.iter().enumerate() {
        mean += (v - mean) / (i + 1) as f64;
    }
    values.iter().copied().min_by(|a, b| (a - mean).abs().total_cmp(&(b - mean).abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_delta() {
        assert_eq!(hedge_ratio(1.0, 100.0, -1.0, 101.0).unwrap(), Some(1.01));
        assert_eq!(hedge_ratio(0.0, 100.0, -1.0, 101.0).unwrap(), None);
        assert!(hedge_ratio(f64::NAN, 100.0, -1.0, 101.0).is_err());
        assert_eq!(delta_base(1.5, -1.0).unwrap(), 0.5);
        assert_eq!(delta_quote(1.5, -1.0, 100.0).unwrap(), 50.0);
        assert!((hedge_drift(0.97, 1.0).unwrap() - 0.03).abs() < 1e-12);
    }

    #[test]
    fn rebalance_never_overshoots() {
        assert_eq!(rebalance_qty(0.003, 0.001, 0.0, 60_000.0).unwrap(), -0.003);
        assert_eq!(rebalance_qty(-0.0039, 0.001, 0.0, 60_000.0).unwrap(), 0.003);
        assert_eq!(rebalance_qty(0.3, 0.1, 0.0, 100.0).unwrap(), -0.3);
        assert_eq!(rebalance_qty(0.0009, 0.001, 0.0, 60_000.0).unwrap(), 0.0);
        assert_eq!(rebalance_qty(7.9, 1.0, 0.0, 100.0).unwrap(), -7.0);
        assert_eq!(rebalance_qty(1.999999999999993, 0.001, 0.0, 100.0).unwrap(), -1.999);
        assert_eq!(rebalance_qty(0.7 - 0.4, 0.1, 0.0, 100.0).unwrap(), -0.2);
        assert_eq!(rebalance_qty(0.1 + 0.2, 0.1, 0.0, 100.0).unwrap(), -0.3);
        // below min notional: 0.001 * 60000 = 60 < 100
        assert_eq!(rebalance_qty(0.001, 0.001, 100.0, 60_000.0).unwrap(), 0.0);
        assert_eq!(rebalance_qty(0.002, 0.001, 100.0, 60_000.0).unwrap(), -0.002);
        assert!(rebalance_qty(0.1, 0.0, 0.0, 1.0).is_err());
        assert!(rebalance_qty(0.1, 0.001, 0.0, -1.0).is_err());
        assert!(rebalance_qty(f64::NAN, 0.001, 0.0, 1.0).is_err());
        let mut state = 7u64;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let delta = ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 20.0;
            for &lot in &[0.001, 0.01, 0.1, 1.0, 0.00001] {
                let q = rebalance_qty(delta, lot, 0.0, 100.0).unwrap();
                assert!(q.abs() <= delta.abs(), "{delta} {lot} {q}");
                assert!(q == 0.0 || q.signum() == -delta.signum());
                assert!(delta.abs() - q.abs() < lot * (1.0 + 1e-6), "{delta} {lot} {q}");
            }
        }
    }

    #[test]
    fn ewma_known_values() {
        let mut v = EwmaVolatility::new(1.0).unwrap();
        assert!((v.lambda() - 0.5).abs() < 1e-15);
        assert_eq!(v.update(100.0).unwrap(), None);
        let r1 = (110.0f64 / 100.0).ln();
        let got = v.update(110.0).unwrap().unwrap();
        assert!((got - r1.abs()).abs() < 1e-15);
        let r2 = (99.0f64 / 110.0).ln();
        let expected = (0.5 * r1 * r1 + 0.5 * r2 * r2).sqrt();
        assert!((v.update(99.0).unwrap().unwrap() - expected).abs() < 1e-15);
        assert_eq!(v.count(), 3);
        assert!(v.update(0.0).is_err());
        assert_eq!(v.count(), 3);
        assert!(EwmaVolatility::new(0.0).is_err());
        // constant prices: zero volatility
        let mut c = EwmaVolatility::new(10.0).unwrap();
        c.update(5.0).unwrap();
        assert_eq!(c.update(5.0).unwrap(), Some(0.0));
    }

    #[test]
    fn ols_known_values() {
        let mut o = RollingOls::new(3).unwrap();
        assert_eq!(o.update(1.0, 3.0).unwrap(), None);
        // y = 1 + 2x
        assert!((o.update(2.0, 5.0).unwrap().unwrap() - 2.0).abs() < 1e-12);
        assert!((o.update(3.0, 7.0).unwrap().unwrap() - 2.0).abs() < 1e-12);
        assert!((o.alpha().unwrap() - 1.0).abs() < 1e-12);
        // window slides: points (2,5),(3,7),(4,0): beta of that window
        let beta = o.update(4.0, 0.0).unwrap().unwrap();
        // mean x 3, mean y 4; cov = ((-1)(1)+0+(1)(-4))/3 = -5/3; var = 2/3 → -2.5
        assert!((beta + 2.5).abs() < 1e-12, "{beta}");
        assert!((o.alpha().unwrap() - (4.0 + 2.5 * 3.0)).abs() < 1e-12);
        assert_eq!(o.count(), 3);
        // constant x: no beta
        let mut c = RollingOls::new(4).unwrap();
        for y in [1.0, 2.0, 3.0] {
            c.update(1.1, y).unwrap();
        }
        assert_eq!(c.beta(), None);
        assert!(RollingOls::new(1).is_err());
        assert!(c.update(f64::NAN, 1.0).is_err());
        assert_eq!(c.count(), 3);
    }

    #[test]
    fn ols_long_run_matches_direct() {
        let mut o = RollingOls::new(50).unwrap();
        let mut last = None;
        let pts: Vec<(f64, f64)> =
            (0..10_000).map(|i| { let x = 1e4 + (i as f64 * 0.37).sin() * 5.0; (x, 0.7 * x + (i as f64).cos()) }).collect();
        for &(x, y) in &pts {
            last = o.update(x, y).unwrap();
        }
        let tail = &pts[pts.len() - 50..];
        let n = 50.0;
        let mx = tail.iter().map(|p| p.0).sum::<f64>() / n;
        let my = tail.iter().map(|p| p.1).sum::<f64>() / n;
        let cov = tail.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>();
        let var = tail.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum::<f64>();
        let got = last.unwrap();
        assert!((got - cov / var).abs() < 1e-4, "{got} vs {}", cov / var);
    }

    #[test]
    fn hedge_ratio_is_signed() {
        // long spot, short perp: +1; a perp on the wrong (long) side: -1, not a perfect hedge
        assert_eq!(hedge_ratio(2.0, 100.0, -2.0, 100.0).unwrap(), Some(1.0));
        assert_eq!(hedge_ratio(2.0, 100.0, 2.0, 100.0).unwrap(), Some(-1.0));
        assert_eq!(hedge_drift(hedge_ratio(2.0, 100.0, 2.0, 100.0).unwrap().unwrap(), 1.0).unwrap(), 2.0);
        // short spot, long perp: hedged too
        assert_eq!(hedge_ratio(-2.0, 100.0, 2.0, 100.0).unwrap(), Some(1.0));
        // no perp leg: 0, not -0
        assert!(hedge_ratio(1.0, 100.0, 0.0, 100.0).unwrap().unwrap().is_sign_positive());
        assert!(hedge_ratio(1.0, 1.0, 1e200, 1e200).is_err());
    }

    #[test]
    fn ols_window_is_capped() {
        assert!(RollingOls::new(MAX_OLS_WINDOW).is_ok());
        for w in [MAX_OLS_WINDOW + 1, 1 << 40, 1 << 62, usize::MAX] {
            let err = RollingOls::new(w).unwrap_err();
            assert_eq!(err, HedgeError::BadWindow { window: w, max: MAX_OLS_WINDOW });
            assert!(err.to_string().contains(&format!("window {w}")), "{err}");
        }
    }

    /// Two-pass centred reference slope.
    fn ref_beta(pts: &[(f64, f64)]) -> f64 {
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let cov = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>();
        let var = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum::<f64>();
        cov / var
    }

    #[test]
    fn ols_is_precise_at_btc_prices() {
        // x = 60000 + 0.01 * random walk of +-1 ticks; y = 0.9 x + 5 + noise
        let mut state = 11u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for window in [20usize, 500] {
            let mut o = RollingOls::new(window).unwrap();
            let mut pts: Vec<(f64, f64)> = Vec::new();
            let mut k = 0i64;
            let mut worst = 0.0f64;
            for i in 0..20_000 {
                k += if next() < 0.5 { -1 } else { 1 };
                let x = 60_000.0 + 0.01 * k as f64;
                let y = 0.9 * x + 5.0 + (next() - 0.5) * 0.02;
                pts.push((x, y));
                let got = o.update(x, y).unwrap();
                if i >= window {
                    let tail = &pts[pts.len() - window..];
                    let want = ref_beta(tail);
                    let got = got.unwrap_or_else(|| panic!("None at {i} (window {window})"));
                    worst = worst.max(((got - want) / want).abs());
                    let alpha = o.alpha().unwrap();
                    let my = tail.iter().map(|p| p.1).sum::<f64>() / window as f64;
                    let mx = tail.iter().map(|p| p.0).sum::<f64>() / window as f64;
                    assert!((alpha - (my - want * mx)).abs() < 1e-4, "{alpha}");
                }
            }
            assert!(worst < 1e-9, "window {window}: worst relative error {worst}");
        }
    }

    #[test]
    fn ols_shift_follows_a_jump_and_constant_windows_have_no_beta() {
        let mut o = RollingOls::new(4).unwrap();
        for (x, y) in [(1e6, 1.0), (1e6, 2.0), (1e6, 3.0), (1e6, 4.0), (5.0, 1.0), (5.0, 2.0), (5.0, 3.0), (5.0, 4.0)] {
            o.update(x, y).unwrap();
        }
        assert_eq!(o.beta(), None);
        o.update(6.0, 7.0).unwrap();
        // window (5,2),(5,3),(5,4),(6,7): mean x 5.25, mean y 4; cov 0.75, var 0.1875 -> 4
        assert!((o.beta().unwrap() - 4.0).abs() < 1e-12, "{:?}", o.beta());
        assert!((o.alpha().unwrap() - (4.0 - 4.0 * 5.25)).abs() < 1e-9);
    }

    #[test]
    fn ols_errors_on_non_finite_sums_and_keeps_its_state() {
        let mut o = RollingOls::new(3).unwrap();
        o.update(1e200, 1.0).unwrap();
        let err = o.update(-1e200, 2.0).unwrap_err();
        assert!(matches!(err, HedgeError::NotFinite { .. }), "{err}");
        assert_eq!(o.count(), 1);
        o.update(1e200 + 1e150, 3.0).unwrap();
        assert_eq!(o.count(), 2);
        let mut o = RollingOls::new(3).unwrap();
        o.update(1.0, 1e308).unwrap();
        assert!(o.update(2.0, -1e308).is_err());
        assert_eq!(o.count(), 1);
    }
}
