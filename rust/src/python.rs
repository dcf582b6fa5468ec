//! PyO3 bindings of the pure core: `cexarb._core`.
//!
//! Wrappers convert, call and map the error; no logic lives here. Each core error enum maps to
//! its own exception under `CexarbError(ValueError)`.

use numpy::ndarray::Array2;
use numpy::prelude::*;
use numpy::{PyArray2, PyArrayDyn, PyUntypedArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::arena;
use crate::book::{self, ApplyOutcome, BookError, BookSide, L2Delta, OrderBook, Side};
use crate::fsm::{FsmError, TransitionTable};
use crate::gate::{self, GateDepthUpdate};
use crate::hedge::{self, EwmaVolatility, HedgeError, RollingOls};
use crate::order::{self, OrderFieldError, PriceInput};
use crate::pricing;

pyo3::create_exception!(
    cexarb._core,
    CexarbError,
    PyValueError,
    "Base class of every error raised by the core (bad input, sequence, transition)."
);
pyo3::create_exception!(
    cexarb._core,
    BookInputError,
    CexarbError,
    "Bad book input (NaN/inf, negative qty, off-grid price, bad shape); the book is unchanged."
);
pyo3::create_exception!(
    cexarb._core,
    SequenceGapError,
    CexarbError,
    "Raised by OrderBook.require_valid when the book is invalid after a sequence gap."
);
pyo3::create_exception!(
    cexarb._core,
    IllegalTransitionError,
    CexarbError,
    "A state transition that the table does not allow; the message names both states."
);
pyo3::create_exception!(
    cexarb._core,
    PricingError,
    CexarbError,
    "Bad input to a pricing/hedge function (non-finite, non-positive where positive needed)."
);

impl From<BookError> for PyErr {
    fn from(err: BookError) -> PyErr {
        match err {
            BookError::Invalid { .. } => SequenceGapError::new_err(err.to_string()),
            _ => BookInputError::new_err(err.to_string()),
        }
    }
}

impl From<pricing::PricingError> for PyErr {
    fn from(err: pricing::PricingError) -> PyErr {
        PricingError::new_err(err.to_string())
    }
}

impl From<HedgeError> for PyErr {
    fn from(err: HedgeError) -> PyErr {
        PricingError::new_err(err.to_string())
    }
}

impl From<FsmError> for PyErr {
    fn from(err: FsmError) -> PyErr {
        match err {
            FsmError::Illegal { .. } => IllegalTransitionError::new_err(err.to_string()),
            _ => CexarbError::new_err(err.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// levels input

/// Reads levels (float64 array of shape (n, 2), empty (0,), or a sequence of (price, qty) pairs)
/// into `out` (cleared first). Numbers only: finiteness and the grid are checked by the core.
fn extract_levels(
    field: &'static str,
    obj: &Bound<'_, PyAny>,
    out: &mut Vec<(f64, f64)>,
) -> Result<(), BookError> {
    out.clear();
    if let Ok(array) = obj.cast::<PyArrayDyn<f64>>() {
        return extract_f64_array(field, array, out);
    }
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        check_shape(field, array.shape())?;
        // another dtype (int, float32, ...): convert once, then the float64 path
        let converted = obj.call_method1("astype", ("float64",)).map_err(|_| BookError::BadShape {
            field,
            shape: format!("{} with dtype not convertible to float64", shape_text(array.shape())),
        })?;
        let array = converted
            .cast::<PyArrayDyn<f64>>()
            .map_err(|_| BookError::BadShape { field, shape: shape_text(array.shape()) })?;
        return extract_f64_array(field, array, out);
    }
    if let Ok(list) = obj.cast::<PyList>() {
        out.reserve(list.len());
        for (index, item) in list.iter().enumerate() {
            out.push(extract_pair(field, index, &item)?);
        }
        return Ok(());
    }
    let iter = obj.try_iter().map_err(|_| BookError::BadShape {
        field,
        shape: format!("a non-sequence {}", type_name(obj)),
    })?;
    for (index, item) in iter.enumerate() {
        let item = item.map_err(|_| BookError::BadLevel { field, index })?;
        out.push(extract_pair(field, index, &item)?);
    }
    Ok(())
}

fn extract_f64_array(
    field: &'static str,
    array: &Bound<'_, PyArrayDyn<f64>>,
    out: &mut Vec<(f64, f64)>,
) -> Result<(), BookError> {
    check_shape(field, array.shape())?;
    if array.len() == 0 {
        return Ok(());
    }
    let readonly = array.try_readonly().map_err(|_| BookError::BadShape {
        field,
        shape: format!("{} (array is mutably borrowed)", shape_text(array.shape())),
    })?;
    // `as_slice` also accepts an F-contiguous array (its memory read column by column: prices
    // then quantities), so the flat path is taken only for C order; any other layout (Fortran
    // order, strided, negative strides) is copied row by row through the strided view
    let c_flat = if array.is_c_contiguous() { readonly.as_slice().ok() } else { None };
    if let Some(flat) = c_flat {
        // C-contiguous (n, 2)
        out.extend(flat.chunks_exact(2).filter_map(|c| match c {
            [price, qty] => Some((*price, *qty)),
            _ => None,
        }));
    } else {
        let view = readonly.as_array();
        out.reserve(view.len() / 2);
        for row in view.rows() {
            match (row.get(0), row.get(1)) {
                (Some(&p), Some(&q)) => out.push((p, q)),
                _ => return Err(BookError::BadShape { field, shape: shape_text(view.shape()) }),
            }
        }
    }
    Ok(())
}

fn check_shape(field: &'static str, shape: &[usize]) -> Result<(), BookError> {
    match shape {
        [0] | [_, 2] => Ok(()),
        _ => Err(BookError::BadShape { field, shape: shape_text(shape) }),
    }
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".to_owned())
}

#[inline]
fn extract_pair(
    field: &'static str,
    index: usize,
    item: &Bound<'_, PyAny>,
) -> Result<(f64, f64), BookError> {
    let bad = || BookError::BadLevel { field, index };
    if let Ok(tuple) = item.cast::<PyTuple>() {
        if tuple.len() != 2 {
            return Err(bad());
        }
        let price = tuple.get_borrowed_item(0).map_err(|_| bad())?.extract::<f64>().map_err(|_| bad())?;
        let qty = tuple.get_borrowed_item(1).map_err(|_| bad())?.extract::<f64>().map_err(|_| bad())?;
        return Ok((price, qty));
    }
    if item.len().map_err(|_| bad())? != 2 {
        return Err(bad());
    }
    let price = item.get_item(0).map_err(|_| bad())?.extract::<f64>().map_err(|_| bad())?;
    let qty = item.get_item(1).map_err(|_| bad())?.extract::<f64>().map_err(|_| bad())?;
    Ok((price, qty))
}

// ---------------------------------------------------------------------------------------------
// update ids

/// An update id (`int` or `__index__`) as u64: a negative or too large int is a BookInputError
/// (a ValueError) naming the field, not an OverflowError; a non-int a TypeError naming it.
fn u64_arg(field: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    match obj.extract::<u64>() {
        Ok(v) => Ok(v),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(obj.py()) => Err(BookInputError::new_err(
            format!("{field} {} must be an integer within 0..=2**64-1", obj.repr()?),
        )),
        Err(e) => Err(pyo3::exceptions::PyTypeError::new_err(format!("argument '{field}': {}", e.value(obj.py())))),
    }
}

/// `(first_update_id, last_update_id, prev_update_id)` as [`u64_arg`].
fn ids(
    first: &Bound<'_, PyAny>,
    last: &Bound<'_, PyAny>,
    prev: Option<&Bound<'_, PyAny>>,
) -> PyResult<(u64, u64, Option<u64>)> {
    let prev = match prev {
        Some(p) if !p.is_none() => Some(u64_arg("prev_update_id", p)?),
        _ => None,
    };
    Ok((u64_arg("first_update_id", first)?, u64_arg("last_update_id", last)?, prev))
}

// ---------------------------------------------------------------------------------------------
// OrderBook

/// Result of walking one side of the book for a quantity (frozen).
#[pyclass(frozen, name = "Execution", module = "cexarb._core", get_all)]
#[derive(Debug, Clone)]
pub struct PyExecution {
    /// Average fill price; None when nothing could be filled.
    avg_price: Option<f64>,
    filled_qty: f64,
    /// sum(price * qty) over the levels walked, quote currency.
    notional: f64,
    /// Last (worst) level touched.
    worst_price: Option<f64>,
    /// True when the book held the whole qty.
    complete: bool,
    /// Number of levels touched.
    levels: usize,
    /// (avg - best) / best * 1e4, signed so that worse is positive.
    slippage_bps: Option<f64>,
}

#[pymethods]
impl PyExecution {
    fn __repr__(&self) -> String {
        format!(
            "Execution(avg_price={}, filled_qty={:?}, notional={:?}, worst_price={}, complete={}, \
             levels={}, slippage_bps={})",
            opt_repr(self.avg_price),
            self.filled_qty,
            self.notional,
            opt_repr(self.worst_price),
            if self.complete { "True" } else { "False" },
            self.levels,
            opt_repr(self.slippage_bps)
        )
    }
}

fn opt_repr(value: Option<f64>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| format!("{v:?}"))
}

impl From<book::Execution> for PyExecution {
    fn from(e: book::Execution) -> Self {
        Self {
            avg_price: e.avg_price,
            filled_qty: e.filled_qty,
            notional: e.notional,
            worst_price: e.worst_price,
            complete: e.complete,
            levels: e.levels,
            slippage_bps: e.slippage_bps,
        }
    }
}

/// `(bids, asks)` float64 arrays of shape (k, 2).
type DepthArrays<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray2<f64>>);

/// One exchange depth message, built in advance (replay/benchmarks), applied with apply_delta.
#[pyclass(frozen, name = "L2Delta", module = "cexarb._core")]
pub struct PyL2Delta {
    inner: L2Delta,
}

#[pymethods]
impl PyL2Delta {
    #[new]
    #[pyo3(signature = (bids, asks, first_update_id, last_update_id, prev_update_id=None, is_snapshot=false))]
    fn new(
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
        first_update_id: &Bound<'_, PyAny>,
        last_update_id: &Bound<'_, PyAny>,
        prev_update_id: Option<&Bound<'_, PyAny>>,
        is_snapshot: bool,
    ) -> PyResult<Self> {
        let (first_update_id, last_update_id, prev_update_id) = ids(first_update_id, last_update_id, prev_update_id)?;
        let mut bid_rows = Vec::new();
        let mut ask_rows = Vec::new();
        extract_levels("bids", bids, &mut bid_rows)?;
        extract_levels("asks", asks, &mut ask_rows)?;
        let inner = L2Delta::new(
            bid_rows,
            ask_rows,
            first_update_id,
            last_update_id,
            prev_update_id,
            is_snapshot,
        )?;
        Ok(Self { inner })
    }

    /// Total number of level rows (bids + asks).
    #[getter]
    fn n_levels(&self) -> usize {
        self.inner.n_levels()
    }
    #[getter]
    fn first_update_id(&self) -> u64 {
        self.inner.first_update_id()
    }
    #[getter]
    fn last_update_id(&self) -> u64 {
        self.inner.last_update_id()
    }
    #[getter]
    fn prev_update_id(&self) -> Option<u64> {
        self.inner.prev_update_id()
    }
    #[getter]
    fn is_snapshot(&self) -> bool {
        self.inner.is_snapshot()
    }

    fn __repr__(&self) -> String {
        format!(
            "L2Delta(n_bids={}, n_asks={}, first_update_id={}, last_update_id={}, \
             prev_update_id={}, is_snapshot={})",
            self.inner.bids().len(),
            self.inner.asks().len(),
            self.inner.first_update_id(),
            self.inner.last_update_id(),
            self.inner.prev_update_id().map_or_else(|| "None".to_owned(), |v| v.to_string()),
            if self.inner.is_snapshot() { "True" } else { "False" }
        )
    }
}

/// L2 price-level order book; levels keyed by integer ticks (round(price / tick_size)).
///
/// Sequence rules (Binance "How to manage a local order book correctly"): the rules used are
/// chosen per update by whether prev_update_id is given (futures pu) or not (spot).
#[pyclass(name = "OrderBook", module = "cexarb._core")]
pub struct PyOrderBook {
    inner: OrderBook,
    /// Reused input buffers (levels are extracted once per call).
    in_bids: Vec<(f64, f64)>,
    in_asks: Vec<(f64, f64)>,
}

impl PyOrderBook {
    fn extract_inputs(&mut self, bids: &Bound<'_, PyAny>, asks: &Bound<'_, PyAny>) -> PyResult<()> {
        extract_levels("bids", bids, &mut self.in_bids)?;
        extract_levels("asks", asks, &mut self.in_asks)?;
        Ok(())
    }
}

#[pymethods]
impl PyOrderBook {
    #[new]
    fn new(tick_size: f64, lot_size: f64) -> PyResult<Self> {
        Ok(Self {
            inner: OrderBook::new(tick_size, lot_size)?,
            in_bids: Vec::with_capacity(64),
            in_asks: Vec::with_capacity(64),
        })
    }

    /// Replaces both sides (qty 0 rows skipped) and sets last_update_id = update_id.
    fn apply_snapshot(
        &mut self,
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
        update_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let update_id = u64_arg("update_id", update_id)?;
        self.extract_inputs(bids, asks)?;
        self.inner.apply_snapshot(&self.in_bids, &self.in_asks, update_id)?;
        Ok(())
    }

    /// Applies one depth event (absolute level quantities, qty 0 deletes); returns APPLIED,
    /// STALE, GAP, NOT_SYNCED or CROSSED. Raises BookInputError (book unchanged) on bad input,
    /// also when the book is not synced (the input is read and validated before the sequencing).
    #[pyo3(signature = (bids, asks, first_update_id, last_update_id, prev_update_id=None))]
    fn apply_update(
        &mut self,
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
        first_update_id: &Bound<'_, PyAny>,
        last_update_id: &Bound<'_, PyAny>,
        prev_update_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u8> {
        let (first_update_id, last_update_id, prev_update_id) = ids(first_update_id, last_update_id, prev_update_id)?;
        self.extract_inputs(bids, asks)?;
        let outcome = self.inner.apply_update(
            &self.in_bids,
            &self.in_asks,
            first_update_id,
            last_update_id,
            prev_update_id,
        )?;
        Ok(outcome.code())
    }

    /// Applies one depth push given as an object: a parsed :class:`GateDepth` (its native levels,
    /// no Python list per level) or anything with ``bids`` / ``asks`` level sequences (as
    /// :meth:`apply_update` takes them). ``first_update_id`` / ``last_update_id`` /
    /// ``prev_update_id`` as in :meth:`apply_update` (the caller's sequencing rule picks them);
    /// returns the same codes and raises the same BookInputError (book unchanged), also when the
    /// book is not synced.
    #[pyo3(signature = (push, first_update_id, last_update_id, prev_update_id=None))]
    fn apply_push(
        &mut self,
        push: &Bound<'_, PyAny>,
        first_update_id: &Bound<'_, PyAny>,
        last_update_id: &Bound<'_, PyAny>,
        prev_update_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u8> {
        let (first_update_id, last_update_id, prev_update_id) = ids(first_update_id, last_update_id, prev_update_id)?;
        if let Ok(depth) = push.cast::<PyGateDepth>() {
            let depth = &depth.get().inner;
            let outcome =
                self.inner.apply_update(&depth.bids, &depth.asks, first_update_id, last_update_id, prev_update_id)?;
            return Ok(outcome.code());
        }
        let py = push.py();
        let bids = push.getattr(pyo3::intern!(py, "bids"))?;
        let asks = push.getattr(pyo3::intern!(py, "asks"))?;
        self.extract_inputs(&bids, &asks)?;
        let outcome = self.inner.apply_update(
            &self.in_bids,
            &self.in_asks,
            first_update_id,
            last_update_id,
            prev_update_id,
        )?;
        Ok(outcome.code())
    }

    /// Stores the deep rows of the last update that are still pending; returns how many.
    ///
    /// Reads never need this (they see pending rows); a driver calls it after the strategies
    /// reacted to a message so that the work stays off the next message's path.
    fn flush(&mut self) -> usize {
        self.inner.flush()
    }

    /// Rows of the last update not stored yet (both sides).
    #[getter]
    fn pending_rows(&self) -> usize {
        self.inner.pending_rows()
    }

    /// Applies a pre-built L2Delta (snapshot or update); returns the apply_update code.
    fn apply_delta(&mut self, delta: &Bound<'_, PyL2Delta>) -> PyResult<u8> {
        Ok(self.inner.apply_delta(&delta.get().inner)?.code())
    }

    fn best_bid(&self) -> Option<(f64, f64)> {
        self.inner.best_bid()
    }
    fn best_ask(&self) -> Option<(f64, f64)> {
        self.inner.best_ask()
    }
    /// The BBO in one read: ``(bid_price, bid_qty, ask_price, ask_qty)`` (quote currency, base
    /// units or contracts); a side with no level gives None for both its fields. Same values as
    /// ``best_bid()`` and ``best_ask()``, one boundary crossing instead of two.
    fn bbo(&self) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
        let (bid, ask) = (self.inner.best_bid(), self.inner.best_ask());
        (bid.map(|b| b.0), bid.map(|b| b.1), ask.map(|a| a.0), ask.map(|a| a.1))
    }
    fn best_bid_ticks(&self) -> Option<i64> {
        self.inner.best_bid_ticks()
    }
    fn best_ask_ticks(&self) -> Option<i64> {
        self.inner.best_ask_ticks()
    }
    fn mid(&self) -> Option<f64> {
        self.inner.mid()
    }
    fn spread_bps(&self) -> Option<f64> {
        self.inner.spread_bps()
    }

    /// Up to n levels a side as float64 arrays of shape (k, 2) [price, qty], best first.
    fn depth<'py>(
        &self,
        py: Python<'py>,
        n: usize,
    ) -> PyResult<DepthArrays<'py>> {
        let to_array = |side: BookSide| -> PyResult<Bound<'py, PyArray2<f64>>> {
            let flat: Vec<f64> =
                self.inner.levels(side).take(n).flat_map(|(p, q)| [p, q]).collect();
            let rows = flat.len() / 2;
            let array = Array2::from_shape_vec((rows, 2), flat)
                .map_err(|e| CexarbError::new_err(format!("depth array: {e}")))?;
            Ok(array.into_pyarray(py))
        };
        Ok((to_array(BookSide::Bid)?, to_array(BookSide::Ask)?))
    }

    /// Walks the asks ("buy") or bids ("sell") for qty.
    fn executable_price(&self, side: &str, qty: f64) -> PyResult<PyExecution> {
        Ok(self.inner.executable_price(Side::parse(side)?, qty)?.into())
    }

    /// "buy": ask qty at prices <= price_limit; "sell": bid qty at prices >= price_limit.
    fn qty_within(&self, side: &str, price_limit: f64) -> PyResult<f64> {
        Ok(self.inner.qty_within(Side::parse(side)?, price_limit)?)
    }

    /// Quantity at price on side "bid" or "ask" (0.0 when no level).
    fn qty_at(&self, side: &str, price: f64) -> PyResult<f64> {
        Ok(self.inner.qty_at(BookSide::parse(side)?, price)?)
    }

    /// Raises SequenceGapError with the reason when the book is invalid.
    fn require_valid(&self) -> PyResult<()> {
        Ok(self.inner.require_valid()?)
    }

    fn price_to_ticks(&self, price: f64) -> PyResult<i64> {
        Ok(self.inner.price_to_ticks(price)?)
    }
    fn ticks_to_price(&self, ticks: i64) -> f64 {
        self.inner.ticks_to_price(ticks)
    }

    #[getter]
    fn tick_size(&self) -> f64 {
        self.inner.tick_size()
    }
    #[getter]
    fn lot_size(&self) -> f64 {
        self.inner.lot_size()
    }
    #[getter]
    fn is_valid(&self) -> bool {
        self.inner.is_valid()
    }
    #[getter]
    fn is_crossed(&self) -> bool {
        self.inner.is_crossed()
    }
    #[getter]
    fn invalid_reason(&self) -> Option<&str> {
        self.inner.invalid_reason()
    }
    #[getter]
    fn last_update_id(&self) -> Option<u64> {
        self.inner.last_update_id()
    }
    #[getter]
    fn n_bids(&self) -> usize {
        self.inner.n_bids()
    }
    #[getter]
    fn n_asks(&self) -> usize {
        self.inner.n_asks()
    }
    #[getter]
    fn gap_count(&self) -> u64 {
        self.inner.gap_count()
    }
    #[getter]
    fn version(&self) -> u64 {
        self.inner.version()
    }
    #[getter]
    fn bbo_changed(&self) -> bool {
        self.inner.bbo_changed()
    }
    /// Whether the last snapshot/update changed the best bid or best ask price.
    #[getter]
    fn bbo_price_changed(&self) -> bool {
        self.inner.bbo_price_changed()
    }

    fn __repr__(&self) -> String {
        let side = |v: Option<(f64, f64)>| {
            v.map_or_else(|| "None".to_owned(), |(p, q)| format!("({p:?}, {q:?})"))
        };
        format!(
            "OrderBook(tick_size={:?}, best_bid={}, best_ask={}, n_bids={}, n_asks={}, \
             valid={}, last_update_id={})",
            self.inner.tick_size(),
            side(self.inner.best_bid()),
            side(self.inner.best_ask()),
            self.inner.n_bids(),
            self.inner.n_asks(),
            if self.inner.is_valid() { "True" } else { "False" },
            self.inner.last_update_id().map_or_else(|| "None".to_owned(), |v| v.to_string())
        )
    }
}

/// Applies each L2Delta in a native Rust loop (reading best bid and ask after each, like the
/// Python benchmark) with the GIL released; returns (applied, stale, gaps). CROSSED counts as
/// applied. Stops at the first BookInputError (earlier deltas stay applied).
#[pyfunction]
fn replay_deltas(
    py: Python<'_>,
    book: &Bound<'_, PyOrderBook>,
    deltas: &Bound<'_, PyAny>,
) -> PyResult<(u64, u64, u64)> {
    let mut held: Vec<Bound<'_, PyL2Delta>> = Vec::new();
    if let Ok(list) = deltas.cast::<PyList>() {
        held.reserve(list.len());
    }
    for (index, item) in deltas.try_iter()?.enumerate() {
        let item = item?;
        let delta = item.cast_into::<PyL2Delta>().map_err(|e| {
            BookInputError::new_err(format!(
                "deltas[{index}] must be an L2Delta, got {}",
                type_name(e.into_inner().as_any())
            ))
        })?;
        held.push(delta);
    }
    let refs: Vec<&L2Delta> = held.iter().map(|d| &d.get().inner).collect();
    let mut guard = book.try_borrow_mut()?;
    let inner = &mut guard.inner;
    let counts = py.detach(move || -> Result<(u64, u64, u64), BookError> {
        let (mut applied, mut stale, mut gaps) = (0u64, 0u64, 0u64);
        for delta in refs {
            match inner.apply_delta(delta)? {
                ApplyOutcome::Applied | ApplyOutcome::Crossed => applied += 1,
                ApplyOutcome::Stale => stale += 1,
                ApplyOutcome::Gap => gaps += 1,
                ApplyOutcome::NotSynced => {}
            }
            std::hint::black_box((inner.best_bid(), inner.best_ask()));
        }
        Ok((applied, stale, gaps))
    })?;
    Ok(counts)
}

/// The replay driver's fast path (``cexarb.backtest``): the depth messages of a replay merged in
/// time order, applied to their books in a Rust loop for as long as nothing in Python needs to
/// run, so a message that changes nothing a strategy watches costs no Python at all.
///
/// Built once per replay from the books (one per stream), the messages in merged order with
/// their stream index and time (ns). :meth:`advance` applies messages from ``j`` on and returns
/// at the first one Python must handle: one at or after ``stop_ns`` or at ``j_end`` (not
/// applied), or one applied whose outcome is not APPLIED (a gap, stale, not synced, crossed) or
/// that woke the strategy (its stream is watched and the BBO changed as ``watch`` asks). The
/// caller keeps the clock, timers, the fill model and the strategy; it passes ``stop_ns`` = the
/// earliest time any of those needs (next timer, next report sample, the replay's start).
#[pyclass(name = "ReplayCursor", module = "cexarb._core")]
pub struct PyReplayCursor {
    books: Vec<Py<PyOrderBook>>,
    deltas: Vec<Py<PyL2Delta>>,
    src: Vec<u16>,
    ts: Vec<i64>,
    watched: Vec<bool>,
}

#[pymethods]
impl PyReplayCursor {
    /// Args:
    ///     books: the books, one per stream (list of OrderBook).
    ///     deltas: the messages in merged order (list of L2Delta).
    ///     src: the stream index of each message (list of int, < len(books)).
    ///     ts_ns: each message's time, ns (list of int, same length).
    ///     watched: per stream, whether its BBO changes may wake the strategy.
    ///
    /// Raises:
    ///     ValueError: lengths differ, a stream index out of range, or an item of the wrong type
    ///         (naming the argument and index).
    #[new]
    fn new(
        books: Vec<Py<PyOrderBook>>,
        deltas: &Bound<'_, PyList>,
        src: Vec<i64>,
        ts_ns: Vec<i64>,
        watched: Vec<bool>,
    ) -> PyResult<Self> {
        let n = deltas.len();
        if src.len() != n || ts_ns.len() != n {
            return Err(PyValueError::new_err(format!(
                "ReplayCursor: deltas, src and ts_ns must have one entry per message, got {n}, {} and {}",
                src.len(),
                ts_ns.len()
            )));
        }
        if watched.len() != books.len() {
            return Err(PyValueError::new_err(format!(
                "ReplayCursor: watched must have one entry per book ({}), got {}",
                books.len(),
                watched.len()
            )));
        }
        let mut held = Vec::with_capacity(n);
        for (index, item) in deltas.iter().enumerate() {
            let delta = item.cast_into::<PyL2Delta>().map_err(|e| {
                PyValueError::new_err(format!(
                    "ReplayCursor: deltas[{index}] must be an L2Delta, got {}",
                    type_name(e.into_inner().as_any())
                ))
            })?;
            held.push(delta.unbind());
        }
        let mut streams = Vec::with_capacity(n);
        for (index, &s) in src.iter().enumerate() {
            match u16::try_from(s) {
                Ok(v) if (v as usize) < books.len() => streams.push(v),
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "ReplayCursor: src[{index}] = {s} is not a stream index (0..{})",
                        books.len()
                    )))
                }
            }
        }
        Ok(Self { books, deltas: held, src: streams, ts: ts_ns, watched })
    }

    /// Number of messages.
    fn __len__(&self) -> usize {
        self.deltas.len()
    }

    /// Apply messages ``j, j+1, ...`` until Python must handle one; returns ``(k, code)``.
    ///
    /// ``code`` -1: message ``k`` was not applied (its time is at or after ``stop_ns``, or
    /// ``k == j_end``, or ``k`` is past the last message); messages ``j..k`` were applied and
    /// woke nothing. ``code`` >= 0: message ``k`` was applied with that apply code (APPLIED,
    /// STALE, GAP, NOT_SYNCED, CROSSED) and is either not APPLIED or woke the strategy:
    /// ``watch`` is the strategy's BookWatch now (0 NONE: nothing wakes it, 1 PRICE: a best
    /// price moved, 2 TOP: any BBO change) on a watched stream.
    ///
    /// Raises:
    ///     BookInputError: a message's input is invalid (that book unchanged; earlier messages
    ///         stay applied). RuntimeError: a book is borrowed elsewhere.
    fn advance(&self, py: Python<'_>, j: usize, j_end: usize, stop_ns: i64, watch: u8) -> PyResult<(usize, i64)> {
        let mut guards = Vec::with_capacity(self.books.len());
        for book in &self.books {
            guards.push(book.bind(py).try_borrow_mut()?);
        }
        let end = j_end.min(self.deltas.len());
        let applied = ApplyOutcome::Applied.code();
        let mut k = j;
        while k < end {
            if self.ts[k] >= stop_ns {
                break;
            }
            let s = self.src[k] as usize;
            let book = &mut guards[s].inner;
            let code = book.apply_delta(&self.deltas[k].get().inner)?.code();
            if code != applied {
                return Ok((k, i64::from(code)));
            }
            if self.watched[s]
                && ((watch == 2 && book.bbo_changed()) || (watch == 1 && book.bbo_price_changed()))
            {
                return Ok((k, i64::from(code)));
            }
            k += 1;
        }
        Ok((k, -1))
    }
}

// ---------------------------------------------------------------------------------------------
// Gate depth pushes

/// A Gate ``spot.order_book_update`` / ``futures.order_book_update`` push parsed in Rust (see
/// ``parse_gate_depth``); its levels stay native until :meth:`OrderBook.apply_push` applies them.
/// Reads like the codec's ``GateOrderBookUpdate`` (a ``DepthPush`` for the book manager).
#[pyclass(frozen, name = "GateDepth", module = "cexarb._core")]
pub struct PyGateDepth {
    inner: GateDepthUpdate,
    symbol: Py<PyString>,
}

fn levels_list<'py>(py: Python<'py>, levels: &[(f64, f64)]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, levels.iter().map(|&(p, q)| (p, q)))
}

#[pymethods]
impl PyGateDepth {
    /// ``spot.order_book_update`` or ``futures.order_book_update``.
    #[getter]
    fn channel(&self) -> &'static str {
        self.inner.market.channel()
    }
    /// ``s``: currency pair / contract.
    #[getter]
    fn symbol(&self, py: Python<'_>) -> Py<PyString> {
        self.symbol.clone_ref(py)
    }
    /// ``t``: event time, epoch ms.
    #[getter]
    fn ts_ms(&self) -> u64 {
        self.inner.ts_ms
    }
    /// ``U``: first update id.
    #[getter]
    fn first_id(&self) -> u64 {
        self.inner.first_id
    }
    /// ``u``: last update id.
    #[getter]
    fn last_id(&self) -> u64 {
        self.inner.last_id
    }
    /// ``full``: the push replaces the book (PROTOCOLS.md §2.5 rule 6).
    #[getter]
    fn full(&self) -> bool {
        self.inner.full
    }
    /// ``l``: subscribed level count (0 when absent).
    #[getter]
    fn depth(&self) -> u64 {
        self.inner.depth
    }
    /// ``b`` as a new list of ``(price, qty)`` tuples (a copy; the book path never needs it).
    #[getter]
    fn bids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        levels_list(py, &self.inner.bids)
    }
    /// ``a`` as a new list of ``(price, qty)`` tuples.
    #[getter]
    fn asks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        levels_list(py, &self.inner.asks)
    }
    /// Bid rows + ask rows.
    #[getter]
    fn n_levels(&self) -> usize {
        self.inner.bids.len() + self.inner.asks.len()
    }
    fn __repr__(&self) -> String {
        format!(
            "GateDepth(channel={:?}, symbol={:?}, ts_ms={}, first_id={}, last_id={}, full={}, depth={}, \
             n_bids={}, n_asks={})",
            self.inner.market.channel(),
            self.inner.symbol,
            self.inner.ts_ms,
            self.inner.first_id,
            self.inner.last_id,
            if self.inner.full { "True" } else { "False" },
            self.inner.depth,
            self.inner.bids.len(),
            self.inner.asks.len()
        )
    }
}

/// Parses a Gate WS frame (``bytes`` or ``str``) when it is a ``spot.order_book_update`` /
/// ``futures.order_book_update`` push this parser takes; None for any other frame and for a
/// depth push outside its subset (``rust/src/gate.rs``) -- decode those with the general codec,
/// which also names what is wrong with a malformed one.
#[pyfunction]
fn parse_gate_depth(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Option<PyGateDepth>> {
    let parsed = if let Ok(bytes) = data.cast::<PyBytes>() {
        gate::parse_depth_update(bytes.as_bytes())
    } else if let Ok(text) = data.cast::<PyString>() {
        gate::parse_depth_update(text.to_str()?.as_bytes())
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "parse_gate_depth: data must be bytes or str, got {}",
            type_name(data)
        )));
    };
    match parsed {
        Ok(inner) => {
            let symbol = PyString::new(py, &inner.symbol).unbind();
            Ok(Some(PyGateDepth { inner, symbol }))
        }
        Err(_) => Ok(None),
    }
}

/// The compact JSON ``POST /spot/orders`` body of a Gate spot limit order as bytes, or None when
/// a field needs escaping or a check (the codec's general path then builds it or raises); see
/// ``rust/src/gate.rs`` ``spot_limit_order_body``. ``amount`` (base units) / ``price`` (quote)
/// exact decimal strings; ``side`` buy / sell; ``time_in_force`` gtc / ioc / post_only.
#[pyfunction]
fn gate_spot_limit_body<'py>(
    py: Python<'py>,
    symbol: &str,
    side: &str,
    amount: &str,
    price: &str,
    time_in_force: &str,
    client_order_id: &str,
) -> Option<Bound<'py, PyBytes>> {
    gate::spot_limit_order_body(symbol, side, amount, price, time_in_force, client_order_id)
        .map(|body| PyBytes::new(py, &body))
}

// ---------------------------------------------------------------------------------------------
// pricing

/// Shared borrow of a book held by another object, as a Python error (RuntimeError naming the
/// book) when it is being mutated (`replay_deltas` holds it mutably with the GIL released).
fn try_read_book<'py>(name: &str, book: &Bound<'py, PyOrderBook>) -> PyResult<PyRef<'py, PyOrderBook>> {
    book.try_borrow().map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!(
            "book {name} is being mutated (e.g. by replay_deltas on another thread), cannot read it now: {e}"
        ))
    })
}

fn borrow_book<'a>(book: &'a PyRef<'_, PyOrderBook>) -> &'a OrderBook {
    &book.inner
}

/// Entry spread (bps) of buying qty on buy_book at its average ask and selling on sell_book at
/// its average bid, net of taker fees; None if a book is invalid or too shallow.
#[pyfunction]
fn entry_spread_bps(
    buy_book: PyRef<'_, PyOrderBook>,
    sell_book: PyRef<'_, PyOrderBook>,
    qty: f64,
    buy_taker_fee: f64,
    sell_taker_fee: f64,
) -> PyResult<Option<f64>> {
    Ok(pricing::entry_spread_bps(
        borrow_book(&buy_book),
        borrow_book(&sell_book),
        qty,
        buy_taker_fee,
        sell_taker_fee,
    )?)
}

/// The better direction of a cross-venue round trip of `qty` between books `a` and `b`, both
/// walked for `qty`, net of taker fees, in one call:
/// `(buy_on_a, spread_bps, buy_avg, sell_avg, buy_slippage_bps, sell_slippage_bps,
/// buy_best_ticks, sell_best_ticks)`, or None when a book is invalid or neither direction fills.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn best_cross(
    a: PyRef<'_, PyOrderBook>,
    b: PyRef<'_, PyOrderBook>,
    qty: f64,
    a_taker_fee: f64,
    b_taker_fee: f64,
) -> PyResult<Option<(bool, f64, f64, f64, f64, f64, i64, i64)>> {
    Ok(pricing::best_cross(borrow_book(&a), borrow_book(&b), qty, a_taker_fee, b_taker_fee)?.map(|x| {
        (
            x.buy_on_a,
            x.spread_bps,
            x.buy_avg,
            x.sell_avg,
            x.buy_slippage_bps,
            x.sell_slippage_bps,
            x.buy_best_ticks,
            x.sell_best_ticks,
        )
    }))
}

/// The SIMPLE_ARBITRAGE entry scan of two books in one call (`pricing::arb_entry`): sizing at
/// book a's mid, both directions walked net of taker fees, and, at or above the threshold, the
/// buy leg priced and formatted as exact decimal strings.
///
/// `ArbEntry(a, b, notional, min_notional, threshold_bps, slippage_tolerance, a_tick_size,
/// a_lot_size, a_taker_fee, b_tick_size, b_lot_size, b_taker_fee)`; the quantity step is the
/// coarser of the two lots. `scan()` returns None (a book invalid or empty, neither direction
/// fills) or `(buy_on_a, spread_bps, qty, buy_slippage_bps, sell_slippage_bps, buy_best_ticks,
/// order)` where `order` is None below the threshold, else the buy leg's IOC limit
/// `(qty_lots, limit_ticks, wire_qty, wire_price, qty, price)` on the buy instrument's grid
/// (floats nearest the decimal strings). Raises PricingError when the size is below the min
/// notional or off the buy instrument's lot grid.
#[pyclass(name = "ArbEntry", module = "cexarb._core", frozen)]
pub struct PyArbEntry {
    a: Py<PyOrderBook>,
    b: Py<PyOrderBook>,
    params: pricing::ArbEntryParams,
    a_tick: pricing::DecimalStep,
    a_lot: pricing::DecimalStep,
    b_tick: pricing::DecimalStep,
    b_lot: pricing::DecimalStep,
}

type ArbOrder = (i64, i64, String, String, f64, f64);

#[pymethods]
impl PyArbEntry {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (a, b, notional, min_notional, threshold_bps, slippage_tolerance, a_tick_size,
                        a_lot_size, a_taker_fee, b_tick_size, b_lot_size, b_taker_fee))]
    fn new(
        a: Py<PyOrderBook>,
        b: Py<PyOrderBook>,
        notional: f64,
        min_notional: f64,
        threshold_bps: f64,
        slippage_tolerance: f64,
        a_tick_size: f64,
        a_lot_size: f64,
        a_taker_fee: f64,
        b_tick_size: f64,
        b_lot_size: f64,
        b_taker_fee: f64,
    ) -> PyResult<Self> {
        let params = pricing::ArbEntryParams {
            notional,
            step: a_lot_size.max(b_lot_size),
            min_notional,
            a_taker_fee,
            b_taker_fee,
            threshold_bps,
            slippage_tolerance,
        };
        params.validate()?;
        Ok(Self {
            a,
            b,
            params,
            a_tick: pricing::DecimalStep::new(a_tick_size)?,
            a_lot: pricing::DecimalStep::new(a_lot_size)?,
            b_tick: pricing::DecimalStep::new(b_tick_size)?,
            b_lot: pricing::DecimalStep::new(b_lot_size)?,
        })
    }

    /// See the class docs.
    #[allow(clippy::type_complexity)]
    fn scan(&self, py: Python<'_>) -> PyResult<Option<(bool, f64, f64, f64, f64, i64, Option<ArbOrder>)>> {
        // a book mutated with the GIL released (replay_deltas on another thread) is mutably
        // borrowed: a Python error, never a panic
        let a = try_read_book("a", self.a.bind(py))?;
        let b = try_read_book("b", self.b.bind(py))?;
        let Some(signal) = pricing::arb_entry(&a.inner, &b.inner, &self.params)? else {
            return Ok(None);
        };
        let x = signal.cross;
        let order = match signal.buy_limit_ticks {
            None => None,
            Some(ticks) => {
                let (tick, lot) = if x.buy_on_a { (&self.a_tick, &self.a_lot) } else { (&self.b_tick, &self.b_lot) };
                let lots = lot.count(signal.qty)?;
                let wire_qty = lot.format(lots)?;
                let wire_price = tick.format(ticks)?;
                let qty = lot.value(lots)?;
                let price = tick.value(ticks)?;
                Some((lots, ticks, wire_qty, wire_price, qty, price))
            }
        };
        Ok(Some((
            x.buy_on_a,
            x.spread_bps,
            signal.qty,
            x.buy_slippage_bps,
            x.sell_slippage_bps,
            x.buy_best_ticks,
            order,
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// signing

/// HMAC-SHA512 with the key and a fixed message prefix absorbed once (`sign::PrefixedHmacSha512`).
/// `PrefixedHmacSha512(key: bytes, prefix: bytes)`; holds only hash states, never prints them.
#[pyclass(name = "PrefixedHmacSha512", module = "cexarb._core", frozen)]
pub struct PyPrefixedHmacSha512 {
    inner: crate::sign::PrefixedHmacSha512,
}

#[pymethods]
impl PyPrefixedHmacSha512 {
    #[new]
    fn new(key: &[u8], prefix: &[u8]) -> Self {
        Self { inner: crate::sign::PrefixedHmacSha512::new(key, prefix) }
    }

    /// Lower-case hex HMAC of prefix + tail, as bytes.
    fn hexdigest<'py>(&self, py: Python<'py>, tail: &[u8]) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &self.inner.hex(tail))
    }

    /// Gate.io v4 REST header lines for a request whose `METHOD\npath\nquery\n` is the prefix:
    /// `key_line + b"Timestamp: " + timestamp + b"\r\nSIGN: " + sign + b"\r\nContent-Type:
    /// application/json\r\n" + extra`, sign = hex HMAC of prefix + hex(SHA512(body)) + "\n" +
    /// timestamp.
    fn gate_rest_lines<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        timestamp: &[u8],
        key_line: &[u8],
        extra: &[u8],
    ) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &crate::sign::gate_rest_lines(&self.inner, body, timestamp, key_line, extra))
    }

    fn __repr__(&self) -> &'static str {
        "PrefixedHmacSha512(<secret>)"
    }
}

// ---------------------------------------------------------------------------------------------
// risk

/// Pre-trade limits (`risk::PreTradeLimits`); 0 switches a limit off.
/// `PreTradeRisk(max_order_notional, max_position_notional, price_band_bps, max_open_orders)`:
/// notionals in quote currency, price band in bps of the mid.
#[pyclass(name = "PreTradeRisk", module = "cexarb._core", frozen)]
pub struct PyPreTradeRisk {
    limits: crate::risk::PreTradeLimits,
}

#[pymethods]
impl PyPreTradeRisk {
    #[new]
    fn new(max_order_notional: f64, max_position_notional: f64, price_band_bps: f64, max_open_orders: u64) -> PyResult<Self> {
        for (field, value) in [
            ("max_order_notional", max_order_notional),
            ("max_position_notional", max_position_notional),
            ("price_band_bps", price_band_bps),
        ] {
            pricing::non_negative(field, value)?;
        }
        Ok(Self {
            limits: crate::risk::PreTradeLimits { max_order_notional, max_position_notional, price_band_bps, max_open_orders },
        })
    }

    /// Checks one order on `book` now: None when within every limit, else the first breach as
    /// `(code, value, limit)`: `("book_invalid", 0, 0)`, `("no_mid", 0, 0)`,
    /// `("order_notional", notional, limit)`, `("position_notional", notional after, limit)`,
    /// `("price_band", bps through the mid, limit)`, `("open_orders", open, limit)`.
    /// `side_sign` +1 buy / -1 sell; `price` None for a market order (valued at the mid).
    /// Raises PricingError naming the field for a malformed order (fails closed): `qty`,
    /// `contract_size` or `price` not finite and > 0, `side_sign` not +1/-1, `position_qty` not
    /// finite.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (book, side_sign, qty, price, position_qty, open_orders, contract_size, inverse))]
    fn check(
        &self,
        book: PyRef<'_, PyOrderBook>,
        side_sign: f64,
        qty: f64,
        price: Option<f64>,
        position_qty: f64,
        open_orders: u64,
        contract_size: f64,
        inverse: bool,
    ) -> PyResult<Option<(&'static str, f64, f64)>> {
        use crate::risk::RiskBreach as B;
        let order = crate::risk::OrderCheck { side_sign, qty, price, position_qty, open_orders, contract_size, inverse };
        Ok(match self.limits.check(&book.inner, &order) {
            Ok(()) => None,
            Err(B::BadOrder { field, value, requirement }) => {
                return Err(PricingError::new_err(format!("{field} {value} {requirement}")));
            }
            Err(B::BookInvalid) => Some(("book_invalid", 0.0, 0.0)),
            Err(B::NoMid) => Some(("no_mid", 0.0, 0.0)),
            Err(B::OrderNotional { notional, limit }) => Some(("order_notional", notional, limit)),
            Err(B::PositionNotional { notional, limit }) => Some(("position_notional", notional, limit)),
            Err(B::PriceBand { through_bps, limit, .. }) => Some(("price_band", through_bps, limit)),
            Err(B::OpenOrders { open, limit }) => Some(("open_orders", open as f64, limit as f64)),
        })
    }
}

/// Exit spread (bps) of selling qty on long_book at its average bid and buying on short_book
/// at its average ask, net of taker fees; None if a book is invalid or too shallow.
#[pyfunction]
fn exit_spread_bps(
    long_book: PyRef<'_, PyOrderBook>,
    short_book: PyRef<'_, PyOrderBook>,
    qty: f64,
    long_taker_fee: f64,
    short_taker_fee: f64,
) -> PyResult<Option<f64>> {
    Ok(pricing::exit_spread_bps(
        borrow_book(&long_book),
        borrow_book(&short_book),
        qty,
        long_taker_fee,
        short_taker_fee,
    )?)
}

/// (perp_price - spot_price) / spot_price * 1e4.
#[pyfunction]
fn basis_bps(perp_price: f64, spot_price: f64) -> PyResult<f64> {
    Ok(pricing::basis_bps(perp_price, spot_price)?)
}

/// rate_per_interval * 24 * 365 / interval_hours.
#[pyfunction]
fn annualized_funding_rate(rate_per_interval: f64, interval_hours: f64) -> PyResult<f64> {
    Ok(pricing::annualized_funding_rate(rate_per_interval, interval_hours)?)
}

/// -perp_qty * mark_price * funding_rate * n_intervals (positive funding: longs pay shorts).
#[pyfunction]
fn expected_funding_pnl(
    perp_qty: f64,
    mark_price: f64,
    funding_rate: f64,
    n_intervals: f64,
) -> PyResult<f64> {
    Ok(pricing::expected_funding_pnl(perp_qty, mark_price, funding_rate, n_intervals)?)
}

/// Exact decimal string of ticks * tick_size with decimals_for_step(tick_size) decimals.
#[pyfunction]
fn ticks_to_decimal_str(ticks: i64, tick_size: f64) -> PyResult<String> {
    Ok(pricing::ticks_to_decimal_str(ticks, tick_size)?)
}

/// The wire strings and floats of an order, in one call: `(wire_qty, wire_price, qty, price)`.
///
/// `wire_qty = qty_lots * lot_size` and `wire_price = price_ticks * tick_size` as exact decimal
/// strings (see `ticks_to_decimal_str`); `qty` / `price` are the floats nearest those decimals.
/// `price_ticks=None` (a market order) gives `wire_price` and `price` None.
#[pyfunction]
#[pyo3(signature = (qty_lots, lot_size, price_ticks, tick_size))]
fn order_wire(
    qty_lots: i64,
    lot_size: f64,
    price_ticks: Option<i64>,
    tick_size: f64,
) -> PyResult<(String, Option<String>, f64, Option<f64>)> {
    let wire_qty = pricing::ticks_to_decimal_str(qty_lots, lot_size)?;
    let qty = wire_qty.parse::<f64>().map_err(|e| PyValueError::new_err(format!("qty {wire_qty:?}: {e}")))?;
    let (wire_price, price) = match price_ticks {
        Some(ticks) => {
            let wire = pricing::ticks_to_decimal_str(ticks, tick_size)?;
            let price = wire.parse::<f64>().map_err(|e| PyValueError::new_err(format!("price {wire:?}: {e}")))?;
            (Some(wire), Some(price))
        }
        None => (None, None),
    };
    Ok((wire_qty, wire_price, qty, price))
}

/// `OrderRequest.create`'s checks and wire formatting in one call:
/// `(qty_lots, price_ticks, wire_qty, wire_price, qty, price)`.
///
/// `qty` base units (or contracts), a whole number of ``instrument.lot_size`` lots within 1e-6
/// lot (plus 1e-12 relative float noise); `price` quote currency on the ``instrument.tick_size``
/// grid within 1e-6 tick, or `price_ticks` whole ticks (not both); neither: a market order
/// (`price_ticks`, `wire_price`, `price` None), an error when `limit_required`. `wire_qty` /
/// `wire_price` exact decimal strings of the counts (`ticks_to_decimal_str`), `qty` / `price`
/// the floats nearest them. Raises ValueError naming the field and the value given (the caller's
/// own `repr`), PricingError for a bad tick/lot size.
#[pyfunction]
#[pyo3(signature = (instrument, qty, price, price_ticks, limit_required))]
#[allow(clippy::type_complexity)]
fn order_fields(
    instrument: &Bound<'_, PyAny>,
    qty: &Bound<'_, PyAny>,
    price: Option<&Bound<'_, PyAny>>,
    price_ticks: Option<&Bound<'_, PyAny>>,
    limit_required: bool,
) -> PyResult<(i64, Option<i64>, String, Option<String>, f64, Option<f64>)> {
    let py = instrument.py();
    let lot_obj = instrument.getattr(pyo3::intern!(py, "lot_size"))?;
    let tick_obj = instrument.getattr(pyo3::intern!(py, "tick_size"))?;
    let lot_size: f64 = lot_obj.extract()?;
    let tick_size: f64 = tick_obj.extract()?;
    let repr = |obj: Option<&Bound<'_, PyAny>>| -> PyResult<String> {
        Ok(match obj {
            Some(o) => o.repr()?.to_string(),
            None => "None".to_owned(),
        })
    };
    let fail = |err: OrderFieldError| -> PyResult<PyErr> {
        Ok(match err {
            OrderFieldError::QtyNotPositive => {
                PyValueError::new_err(format!("order qty must be finite and > 0, got {}", repr(Some(qty))?))
            }
            OrderFieldError::QtyOffLot => PyValueError::new_err(format!(
                "order qty {} is not a multiple of lot_size {}",
                repr(Some(qty))?,
                repr(Some(&lot_obj))?
            )),
            OrderFieldError::PriceAndTicks => PyValueError::new_err(format!(
                "give price or price_ticks, not both (price {}, price_ticks {})",
                repr(price)?,
                repr(price_ticks)?
            )),
            OrderFieldError::TicksNotPositive => {
                PyValueError::new_err(format!("order price_ticks must be > 0, got {}", repr(price_ticks)?))
            }
            OrderFieldError::TicksNotInteger => PyValueError::new_err(format!(
                "order price_ticks must be a whole number of ticks (an int), got {}",
                repr(price_ticks)?
            )),
            OrderFieldError::TicksOutOfRange => PyValueError::new_err(format!(
                "order price_ticks {} is beyond the supported range (< 2**63)",
                repr(price_ticks)?
            )),
            OrderFieldError::PriceRequired => {
                PyValueError::new_err("order price is required for a limit order, got None")
            }
            OrderFieldError::PriceNotPositive => {
                PyValueError::new_err(format!("order price must be finite and > 0, got {}", repr(price)?))
            }
            OrderFieldError::PriceOffTick => PyValueError::new_err(format!(
                "order price {} is not a multiple of tick_size {}",
                repr(price)?,
                repr(Some(&tick_obj))?
            )),
            OrderFieldError::PriceBelowOneTick => PyValueError::new_err(format!(
                "order price {} is below one tick_size {}",
                repr(price)?,
                repr(Some(&tick_obj))?
            )),
            OrderFieldError::Wire(e) => e.into(),
        })
    };
    let lots = order::qty_lots(qty.extract::<f64>()?, lot_size).or_else(|e| Err(fail(e)?))?;
    let input = match (price_ticks, price) {
        (Some(_), Some(_)) => return Err(fail(OrderFieldError::PriceAndTicks)?),
        // an int (or `__index__`: numpy ints, bool) only, never truncated; `<= 0` first, as the
        // Python check this replaces words it
        (Some(t), None) => match t.extract::<i64>() {
            Ok(ticks) => PriceInput::Ticks(ticks),
            Err(_) if t.le(0)? => return Err(fail(OrderFieldError::TicksNotPositive)?),
            Err(_) if t.hasattr(pyo3::intern!(py, "__index__"))? => {
                return Err(fail(OrderFieldError::TicksOutOfRange)?)
            }
            Err(_) => return Err(fail(OrderFieldError::TicksNotInteger)?),
        },
        (None, Some(p)) => PriceInput::Price(p.extract::<f64>()?),
        (None, None) => PriceInput::None,
    };
    let ticks = order::price_ticks(input, tick_size, limit_required).or_else(|e| Err(fail(e)?))?;
    let f = order::wire(lots, lot_size, ticks, tick_size).or_else(|e| Err(fail(e)?))?;
    Ok((f.qty_lots, f.price_ticks, f.wire_qty, f.wire_price, f.qty, f.price))
}

/// Number of decimals of the shortest decimal representation of step.
#[pyfunction]
fn decimals_for_step(step: f64) -> PyResult<u32> {
    Ok(pricing::decimals_for_step(step)?)
}

// ---------------------------------------------------------------------------------------------
// hedge

/// Signed -(perp_qty * perp_price) / (spot_qty * spot_price): +1.0 for a short perp hedging
/// long spot at equal notionals, negative when both legs are on the same side; None when the
/// spot notional is 0.
#[pyfunction]
fn hedge_ratio(
    spot_qty: f64,
    spot_price: f64,
    perp_qty: f64,
    perp_price: f64,
) -> PyResult<Option<f64>> {
    Ok(hedge::hedge_ratio(spot_qty, spot_price, perp_qty, perp_price)?)
}

/// spot_qty + perp_qty (signed base units).
#[pyfunction]
fn delta_base(spot_qty: f64, perp_qty: f64) -> PyResult<f64> {
    Ok(hedge::delta_base(spot_qty, perp_qty)?)
}

/// (spot_qty + perp_qty) * price.
#[pyfunction]
fn delta_quote(spot_qty: f64, perp_qty: f64, price: f64) -> PyResult<f64> {
    Ok(hedge::delta_quote(spot_qty, perp_qty, price)?)
}

/// |current_ratio - target_ratio|.
#[pyfunction]
fn hedge_drift(current_ratio: f64, target_ratio: f64) -> PyResult<f64> {
    Ok(hedge::hedge_drift(current_ratio, target_ratio)?)
}

/// Signed qty removing delta_base, rounded toward zero to whole lots; 0.0 below min_notional.
#[pyfunction]
fn rebalance_qty(delta_base: f64, lot_size: f64, min_notional: f64, price: f64) -> PyResult<f64> {
    Ok(hedge::rebalance_qty(delta_base, lot_size, min_notional, price)?)
}

/// EWMA volatility of log returns (RiskMetrics 1996), lambda = 0.5 ** (1 / halflife).
#[pyclass(name = "EwmaVolatility", module = "cexarb._core")]
pub struct PyEwmaVolatility {
    inner: EwmaVolatility,
}

#[pymethods]
impl PyEwmaVolatility {
    #[new]
    fn new(halflife: f64) -> PyResult<Self> {
        Ok(Self { inner: EwmaVolatility::new(halflife)? })
    }
    /// Adds a price; returns the per-update volatility (None before 2 prices).
    fn update(&mut self, price: f64) -> PyResult<Option<f64>> {
        Ok(self.inner.update(price)?)
    }
    #[getter]
    fn value(&self) -> Option<f64> {
        self.inner.value()
    }
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }
}

/// Rolling least squares y = alpha + beta * x over the last window points.
#[pyclass(name = "RollingOls", module = "cexarb._core")]
pub struct PyRollingOls {
    inner: RollingOls,
}

#[pymethods]
impl PyRollingOls {
    /// `window` points, 2 ..= 2**24. Raises PricingError (a ValueError) naming the window
    /// otherwise, also for a negative or huge int.
    #[new]
    fn new(window: &Bound<'_, PyAny>) -> PyResult<Self> {
        let window = index_arg("window", window, || {
            PricingError::new_err(format!(
                "window {} must be >= 2 and <= {}",
                window.repr().map(|r| r.to_string()).unwrap_or_default(),
                hedge::MAX_OLS_WINDOW
            ))
        })?;
        Ok(Self { inner: RollingOls::new(window)? })
    }
    /// Adds a point; returns beta (None with < 2 points or var(x) == 0).
    fn update(&mut self, x: f64, y: f64) -> PyResult<Option<f64>> {
        Ok(self.inner.update(x, y)?)
    }
    #[getter]
    fn beta(&self) -> Option<f64> {
        self.inner.beta()
    }
    #[getter]
    fn alpha(&self) -> Option<f64> {
        self.inner.alpha()
    }
    /// Points in the window (at most window).
    #[getter]
    fn count(&self) -> usize {
        self.inner.count()
    }
}

/// A non-negative int argument (`int` or `__index__`) as usize; `out_of_range()` for a negative
/// or too large one (ValueError naming the field instead of OverflowError), TypeError otherwise.
fn index_arg(
    field: &'static str,
    obj: &Bound<'_, PyAny>,
    out_of_range: impl FnOnce() -> PyErr,
) -> PyResult<usize> {
    match obj.extract::<usize>() {
        Ok(v) => Ok(v),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(obj.py()) => Err(out_of_range()),
        Err(e) => Err(pyo3::exceptions::PyTypeError::new_err(format!("{field}: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// state machines

/// Allowed-transition table (u64 bitmask per state), current state, counts and audit ring.
#[pyclass(name = "TransitionTable", module = "cexarb._core")]
pub struct PyTransitionTable {
    inner: TransitionTable,
}

fn state_index(field: &'static str, state: i64, n_states: usize) -> Result<usize, FsmError> {
    usize::try_from(state).map_err(|_| FsmError::StateOutOfRange { field, state, n_states })
}

#[pymethods]
impl PyTransitionTable {
    #[new]
    #[pyo3(signature = (state_names, allowed, initial, audit_capacity=4096))]
    fn new(
        state_names: Vec<String>,
        allowed: Vec<(i64, i64)>,
        initial: i64,
        audit_capacity: usize,
    ) -> PyResult<Self> {
        let n = state_names.len();
        let mut pairs = Vec::with_capacity(allowed.len());
        for (from, to) in allowed {
            pairs.push((state_index("from_state", from, n)?, state_index("to_state", to, n)?));
        }
        let initial = state_index("initial", initial, n)?;
        Ok(Self { inner: TransitionTable::new(state_names, &pairs, initial, audit_capacity)? })
    }

    fn is_allowed(&self, from_state: i64, to_state: i64) -> PyResult<bool> {
        let n = self.inner.n_states();
        Ok(self.inner.is_allowed(
            state_index("from_state", from_state, n)?,
            state_index("to_state", to_state, n)?,
        )?)
    }

    /// Moves to to_state (recording event and ts_ns); returns the previous state.
    /// Raises IllegalTransitionError (state unchanged) when not allowed or out of range.
    fn transition(&mut self, to_state: i64, event: i64, ts_ns: i64) -> PyResult<usize> {
        // an out-of-range target is a transition the table does not allow
        let n_states = self.inner.n_states();
        let out_of_range =
            || FsmError::StateOutOfRange { field: "to_state", state: to_state, n_states };
        let to = usize::try_from(to_state)
            .map_err(|_| IllegalTransitionError::new_err(out_of_range().to_string()))?;
        match self.inner.transition(to, event, ts_ns) {
            Ok(previous) => Ok(previous),
            Err(FsmError::StateOutOfRange { .. }) => {
                Err(IllegalTransitionError::new_err(out_of_range().to_string()))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Moves along path (a sequence of states, each reached from the previous), all or
    /// nothing, recording each step with event and ts_ns; returns the state before the path.
    /// Raises IllegalTransitionError (state unchanged, nothing recorded) naming the failing step.
    fn transition_path(&mut self, path: Vec<i64>, event: i64, ts_ns: i64) -> PyResult<usize> {
        let n_states = self.inner.n_states();
        let mut steps = [0usize; 64];
        if path.len() > steps.len() {
            return Err(PyValueError::new_err(format!("path has {} states, more than 64", path.len())));
        }
        for (slot, &state) in steps.iter_mut().zip(&path) {
            *slot = usize::try_from(state).map_err(|_| {
                IllegalTransitionError::new_err(
                    FsmError::StateOutOfRange { field: "to_state", state, n_states }.to_string(),
                )
            })?;
        }
        match self.inner.transition_path(&steps[..path.len()], event, ts_ns) {
            Ok(previous) => Ok(previous),
            Err(err @ FsmError::StateOutOfRange { .. }) => Err(IllegalTransitionError::new_err(err.to_string())),
            Err(err) => Err(err.into()),
        }
    }

    /// Audit records (from_state, to_state, event, ts_ns), oldest first.
    fn audit(&self) -> Vec<(u8, u8, i64, i64)> {
        self.inner.audit()
    }

    /// Times each state was entered by a transition.
    fn counts(&self) -> Vec<u64> {
        self.inner.counts().to_vec()
    }

    /// Sets the state without a check (audit and counts kept).
    fn reset(&mut self, state: i64) -> PyResult<()> {
        let state = state_index("state", state, self.inner.n_states())?;
        Ok(self.inner.reset(state)?)
    }

    #[getter]
    fn state(&self) -> usize {
        self.inner.state()
    }
    #[getter]
    fn n_states(&self) -> usize {
        self.inner.n_states()
    }
    #[getter]
    fn total_transitions(&self) -> u64 {
        self.inner.total_transitions()
    }

    fn state_name(&self, state: i64) -> PyResult<String> {
        let state = state_index("state", state, self.inner.n_states())?;
        Ok(self.inner.name(state)?.to_owned())
    }
}

// ---------------------------------------------------------------------------------------------

/// cexarb core: L2 order book, spread/basis/hedge maths, state-transition table.
/// Installs the process's arena cache (``rust/src/arena.rs``) in front of CPython's current
/// arena allocator, given as the integer addresses of its ``ctx``, ``alloc`` and ``free``
/// (``PyObject_GetArenaAllocator``); holds at most ``max_cached_bytes`` of arenas. Returns the
/// addresses ``(ctx, alloc, free)`` to pass to ``PyObject_SetArenaAllocator``. Used by
/// ``cexarb.memory``, not meant to be called directly.
///
/// Raises ValueError when a cache is installed already or an address is 0.
#[pyfunction]
fn _arena_cache_install(
    prev_ctx: usize,
    prev_alloc: usize,
    prev_free: usize,
    max_cached_bytes: usize,
) -> PyResult<(usize, usize, usize)> {
    if prev_alloc == 0 || prev_free == 0 {
        return Err(PyValueError::new_err(format!(
            "arena allocator: alloc and free must be non-null, got alloc={prev_alloc:#x} free={prev_free:#x}"
        )));
    }
    // SAFETY: the addresses are CPython's own arena allocator functions, read by the caller with
    // PyObject_GetArenaAllocator; both were checked non-null above
    let prev = unsafe {
        arena::ArenaAllocator {
            ctx: prev_ctx as *mut std::ffi::c_void,
            alloc: Some(std::mem::transmute::<usize, arena::AllocFn>(prev_alloc)),
            free: Some(std::mem::transmute::<usize, arena::FreeFn>(prev_free)),
        }
    };
    if !arena::install(prev, max_cached_bytes) {
        return Err(PyValueError::new_err("arena cache: installed already in this process"));
    }
    let ours = arena::cache_allocator();
    Ok((ours.ctx as usize, ours.alloc.map_or(0, |f| f as usize), ours.free.map_or(0, |f| f as usize)))
}

/// Tops the installed arena cache up towards ``target_bytes`` of arenas with their pages
/// touched, touching at most ``max_pages`` pages in this call; returns the pages touched (0 when
/// none is installed, the arena size is not known yet or the cache is full).
#[pyfunction]
fn _arena_cache_top_up(target_bytes: usize, max_pages: usize) -> usize {
    arena::top_up(target_bytes, max_pages)
}

/// Counters of the installed arena cache as a dict (``arena_size`` bytes, ``cached``, ``hits``,
/// ``misses``, ``kept``, ``released``, ``prefaulted``, ``pages_touched``), or None when none is
/// installed.
#[pyfunction]
fn _arena_cache_stats(py: Python<'_>) -> PyResult<Option<Bound<'_, pyo3::types::PyDict>>> {
    let Some(s) = arena::stats() else { return Ok(None) };
    let d = pyo3::types::PyDict::new(py);
    d.set_item("arena_size", s.arena_size)?;
    d.set_item("cached", s.cached)?;
    d.set_item("hits", s.hits)?;
    d.set_item("misses", s.misses)?;
    d.set_item("kept", s.kept)?;
    d.set_item("released", s.released)?;
    d.set_item("prefaulted", s.prefaulted)?;
    d.set_item("pages_touched", s.pages_touched)?;
    Ok(Some(d))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CexarbError", py.get_type::<CexarbError>())?;
    m.add("BookInputError", py.get_type::<BookInputError>())?;
    m.add("SequenceGapError", py.get_type::<SequenceGapError>())?;
    m.add("IllegalTransitionError", py.get_type::<IllegalTransitionError>())?;
    m.add("PricingError", py.get_type::<PricingError>())?;

    m.add("APPLIED", ApplyOutcome::Applied.code())?;
    m.add("STALE", ApplyOutcome::Stale.code())?;
    m.add("GAP", ApplyOutcome::Gap.code())?;
    m.add("NOT_SYNCED", ApplyOutcome::NotSynced.code())?;
    m.add("CROSSED", ApplyOutcome::Crossed.code())?;

    m.add_class::<PyExecution>()?;
    m.add_class::<PyL2Delta>()?;
    m.add_class::<PyOrderBook>()?;
    m.add_function(wrap_pyfunction!(replay_deltas, m)?)?;
    m.add_class::<PyReplayCursor>()?;
    m.add_class::<PyGateDepth>()?;
    m.add_function(wrap_pyfunction!(parse_gate_depth, m)?)?;
    m.add_function(wrap_pyfunction!(gate_spot_limit_body, m)?)?;

    m.add_function(wrap_pyfunction!(entry_spread_bps, m)?)?;
    m.add_function(wrap_pyfunction!(exit_spread_bps, m)?)?;
    m.add_function(wrap_pyfunction!(basis_bps, m)?)?;
    m.add_function(wrap_pyfunction!(annualized_funding_rate, m)?)?;
    m.add_function(wrap_pyfunction!(expected_funding_pnl, m)?)?;
    m.add_function(wrap_pyfunction!(ticks_to_decimal_str, m)?)?;
    m.add_function(wrap_pyfunction!(order_wire, m)?)?;
    m.add_function(wrap_pyfunction!(order_fields, m)?)?;
    m.add_function(wrap_pyfunction!(best_cross, m)?)?;
    m.add_class::<PyArbEntry>()?;
    m.add_class::<PyPreTradeRisk>()?;
    m.add_class::<PyPrefixedHmacSha512>()?;
    m.add_function(wrap_pyfunction!(decimals_for_step, m)?)?;

    m.add_function(wrap_pyfunction!(hedge_ratio, m)?)?;
    m.add_function(wrap_pyfunction!(delta_base, m)?)?;
    m.add_function(wrap_pyfunction!(delta_quote, m)?)?;
    m.add_function(wrap_pyfunction!(hedge_drift, m)?)?;
    m.add_function(wrap_pyfunction!(rebalance_qty, m)?)?;
    m.add_class::<PyEwmaVolatility>()?;
    m.add_class::<PyRollingOls>()?;

    m.add_class::<PyTransitionTable>()?;

    m.add_function(wrap_pyfunction!(_arena_cache_install, m)?)?;
    m.add_function(wrap_pyfunction!(_arena_cache_top_up, m)?)?;
    m.add_function(wrap_pyfunction!(_arena_cache_stats, m)?)?;
    Ok(())
}
