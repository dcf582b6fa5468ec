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

#[cfg(test)]
pub(crate) mod testutil {
    /// Marsaglia's xorshift64 ("Xorshift RNGs", J. Stat. Software 8(14), 2003): a seeded,
    /// dependency-free stream of u64 for the randomised tests. `seed` must be non-zero.
    pub fn xorshift64(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}
