//! cexarb core: L2 order book, spread/basis/hedge maths and a state-transition table.
//!
//! The core modules are pure Rust (`cargo test` needs no Python). The PyO3 bindings
//! (`cexarb._core`) live in `python.rs`, compiled only with the `python` feature (maturin).

pub mod arena;
pub mod book;
pub mod fsm;
pub mod gate;
pub mod hedge;
pub mod order;
pub mod pricing;
pub mod risk;
pub mod sign;

#[cfg(feature = "python")]
mod python;

pub use book::{ApplyOutcome, BookError, BookSide, Depth, Execution, L2Delta, OrderBook, Side};
pub use fsm::{FsmError, TransitionTable};
pub use gate::{parse_depth_update, GateDepthUpdate, GateMarket, NotTaken};
pub use hedge::{EwmaVolatility, HedgeError, RollingOls};
pub use pricing::PricingError;
pub use risk::{OrderCheck, PreTradeLimits, RiskBreach};
