//! State-transition table for order / position / engine state machines.
//!
//! States are small integers (`< 64`); the allowed transitions are one `u64` bitmask per source
//! state, so [`TransitionTable::is_allowed`] is a shift and a mask. Every transition is recorded
//! in a fixed-capacity audit ring (oldest overwritten) and counted per entered state.
//!
//! Pure Rust: no Python here; the bindings live in `python.rs`.

use thiserror::Error;

/// Maximum number of states (one bit each in a `u64`).
pub const MAX_STATES: usize = 64;

/// Errors of the transition table; each message names the field and its value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FsmError {
    #[error("state_names has {n} states, must be 1..={max}")]
    BadStateCount { n: usize, max: usize },
    #[error("{field} {state} out of range for {n_states} states")]
    StateOutOfRange { field: &'static str, state: i64, n_states: usize },
    /// A transition the table does not allow; the state is unchanged.
    #[error("illegal transition {from_name} -> {to_name} (event {event})")]
    Illegal { from: usize, to: usize, from_name: String, to_name: String, event: i64 },
}

/// One audit record: `(from_state, to_state, event, ts_ns)`.
pub type AuditRecord = (u8, u8, i64, i64);

/// Allowed-transition table with current state, per-state entry counts and an audit ring.
#[derive(Debug, Clone)]
pub struct TransitionTable {
    names: Vec<String>,
    /// `allowed[from] >> to & 1`.
    allowed: Vec<u64>,
    state: usize,
    counts: Vec<u64>,
    total: u64,
    audit: Vec<AuditRecord>,
    capacity: usize,
    /// Next slot to overwrite once the ring is full.
    head: usize,
}

impl TransitionTable {
    /// Errors: 0 or more than 64 states; a pair or `initial` out of range.
    /// `audit_capacity` 0 keeps no audit records.
    pub fn new(
        state_names: Vec<String>,
        allowed: &[(usize, usize)],
        initial: usize,
        audit_capacity: usize,
    ) -> Result<Self, FsmError> {
        let n = state_names.len();
        if n == 0 || n > MAX_STATES {
            return Err(FsmError::BadStateCount { n, max: MAX_STATES });
        }
        let mut masks = vec![0u64; n];
        for &(from, to) in allowed {
            check_state("from_state", from, n)?;
            check_state("to_state", to, n)?;
            if let Some(mask) = masks.get_mut(from) {
                *mask |= 1u64 << to;
            }
        }
        check_state("initial", initial, n)?;
        Ok(Self {
            names: state_names,
            allowed: masks,
            state: initial,
            counts: vec![0; n],
            total: 0,
            audit: Vec::with_capacity(audit_capacity.min(1 << 20)),
            capacity: audit_capacity,
            head: 0,
        })
    }

    /// Whether `from_state -> to_state` is allowed. Errors: a state out of range.
    pub fn is_allowed(&self, from_state: usize, to_state: usize) -> Result<bool, FsmError> {
        let n = self.names.len();
        check_state("from_state", from_state, n)?;
        check_state("to_state", to_state, n)?;
        Ok(self.allowed_unchecked(from_state, to_state))
    }

    #[inline]
    fn allowed_unchecked(&self, from: usize, to: usize) -> bool {
        to < MAX_STATES && self.allowed.get(from).is_some_and(|m| (m >> to) & 1 == 1)
    }

    /// Moves to `to_state`, records `(from, to, event, ts_ns)` and returns the previous state.
    ///
    /// Errors (state unchanged, nothing recorded): `to_state` out of range
    /// ([`FsmError::StateOutOfRange`]) or not allowed from the current state
    /// ([`FsmError::Illegal`]).
    #[inline]
    pub fn transition(&mut self, to_state: usize, event: i64, ts_ns: i64) -> Result<usize, FsmError> {
        let from = self.state;
        if to_state >= self.names.len() {
            return Err(FsmError::StateOutOfRange {
                field: "to_state",
                state: to_state as i64,
                n_states: self.names.len(),
            });
        }
        if !self.allowed_unchecked(from, to_state) {
            return Err(FsmError::Illegal {
                from,
                to: to_state,
                from_name: self.state_name(from).unwrap_or("?").to_owned(),
                to_name: self.state_name(to_state).unwrap_or("?").to_owned(),
                event,
            });
        }
        self.state = to_state;
        if let Some(c) = self.counts.get_mut(to_state) {
            *c += 1;
        }
        self.total += 1;
        // states < 64 fit a u8
        let record = (from as u8, to_state as u8, event, ts_ns);
        if self.audit.len() < self.capacity {
            self.audit.push(record);
        } else if let Some(slot) = self.audit.get_mut(self.head) {
            *slot = record;
            self.head = (self.head + 1) % self.capacity;
        }
        Ok(from)
    }

    /// Moves along `path` (each state reached from the previous one), all or nothing: every step
    /// is checked before any is made, then each is recorded as by [`Self::transition`] with the
    /// same `event` and `ts_ns`. Returns the state before the first step.
    ///
    /// Errors (state unchanged, nothing recorded): the first step out of range or not allowed,
    /// as [`Self::transition`] would report it from the state it starts in.
    pub fn transition_path(&mut self, path: &[usize], event: i64, ts_ns: i64) -> Result<usize, FsmError> {
        let start = self.state;
        let mut from = start;
        for &to in path {
            if to >= self.names.len() {
                return Err(FsmError::StateOutOfRange { field: "to_state", state: to as i64, n_states: self.names.len() });
            }
            if !self.allowed_unchecked(from, to) {
                return Err(FsmError::Illegal {
                    from,
                    to,
                    from_name: self.state_name(from).unwrap_or("?").to_owned(),
                    to_name: self.state_name(to).unwrap_or("?").to_owned(),
                    event,
                });
            }
            from = to;
        }
        for &to in path {
            self.transition(to, event, ts_ns)?;
        }
        Ok(start)
    }

    /// Audit records, oldest first.
    pub fn audit(&self) -> Vec<AuditRecord> {
        let (newer, older) = self.audit.split_at(self.head.min(self.audit.len()));
        older.iter().chain(newer.iter()).copied().collect()
    }

    /// Number of times each state was entered by a transition.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Sets the state without a transition check (audit and counts are kept).
    /// Errors: `state` out of range.
    pub fn reset(&mut self, state: usize) -> Result<(), FsmError> {
        check_state("state", state, self.names.len())?;
        self.state = state;
        Ok(())
    }

    pub fn state(&self) -> usize {
        self.state
    }
    pub fn n_states(&self) -> usize {
        self.names.len()
    }
    pub fn total_transitions(&self) -> u64 {
        self.total
    }
    pub fn audit_capacity(&self) -> usize {
        self.capacity
    }

    /// Name of `state`. Errors: out of range.
    pub fn name(&self, state: usize) -> Result<&str, FsmError> {
        self.state_name(state).ok_or(FsmError::StateOutOfRange {
            field: "state",
            state: state as i64,
            n_states: self.names.len(),
        })
    }

    fn state_name(&self, state: usize) -> Option<&str> {
        self.names.get(state).map(String::as_str)
    }
}

fn check_state(field: &'static str, state: usize, n_states: usize) -> Result<(), FsmError> {
    if state < n_states {
        Ok(())
    } else {
        Err(FsmError::StateOutOfRange { field, state: state as i64, n_states })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_fsm(capacity: usize) -> TransitionTable {
        let names = ["NEW", "OPEN", "FILLED", "CANCELED"].map(String::from).to_vec();
        TransitionTable::new(names, &[(0, 1), (1, 2), (1, 3), (2, 0), (3, 0)], 0, capacity).unwrap()
    }

    #[test]
    fn a_path_is_all_or_nothing() {
        // 0 -> 1 -> 2 -> 0
        let names = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut t = TransitionTable::new(names, &[(0, 1), (1, 2), (2, 0)], 0, 16).unwrap();
        assert_eq!(t.transition_path(&[1, 2], 7, 100).unwrap(), 0);
        assert_eq!(t.state(), 2);
        assert_eq!(t.audit(), vec![(0, 1, 7, 100), (1, 2, 7, 100)]);
        // 2 -> 0 allowed, 0 -> 2 not: nothing happens, the error names the failing step
        let err = t.transition_path(&[0, 2], 8, 200).unwrap_err();
        assert!(matches!(err, FsmError::Illegal { from: 0, to: 2, .. }), "{err}");
        assert_eq!(t.state(), 2);
        assert_eq!(t.audit().len(), 2);
        assert!(matches!(t.transition_path(&[0, 9], 8, 200), Err(FsmError::StateOutOfRange { .. })));
        assert_eq!((t.state(), t.total_transitions()), (2, 2));
        assert_eq!(t.transition_path(&[], 8, 200).unwrap(), 2);
    }

    #[test]
    fn fsm_allowed_and_transition() {
        let mut t = order_fsm(16);
        assert!(t.is_allowed(0, 1).unwrap());
        assert!(!t.is_allowed(0, 2).unwrap());
        assert!(t.is_allowed(0, 9).is_err());
        assert_eq!(t.transition(1, 7, 1000).unwrap(), 0);
        assert_eq!(t.state(), 1);
        assert_eq!(t.transition(2, 8, 2000).unwrap(), 1);
        assert_eq!(t.counts(), &[0, 1, 1, 0]);
        assert_eq!(t.total_transitions(), 2);
        assert_eq!(t.audit(), vec![(0, 1, 7, 1000), (1, 2, 8, 2000)]);
        assert_eq!(t.name(2).unwrap(), "FILLED");
        t.reset(3).unwrap();
        assert_eq!(t.state(), 3);
        assert!(t.reset(4).is_err());
    }

    #[test]
    fn fsm_illegal_transition() {
        let mut t = order_fsm(16);
        let err = t.transition(2, 42, 1).unwrap_err();
        assert_eq!(err.to_string(), "illegal transition NEW -> FILLED (event 42)");
        assert_eq!(t.state(), 0);
        assert_eq!(t.total_transitions(), 0);
        assert!(t.audit().is_empty());
        assert!(matches!(t.transition(99, 0, 0), Err(FsmError::StateOutOfRange { .. })));
    }

    #[test]
    fn fsm_audit_ring_wraparound() {
        let mut t = order_fsm(3);
        let path = [1usize, 2, 0, 1, 3, 0, 1];
        for (i, &s) in path.iter().enumerate() {
            t.transition(s, i as i64, 100 + i as i64).unwrap();
        }
        // last 3 of: (0,1),(1,2),(2,0),(0,1),(1,3),(3,0),(0,1)
        assert_eq!(t.audit(), vec![(1, 3, 4, 104), (3, 0, 5, 105), (0, 1, 6, 106)]);
        assert_eq!(t.total_transitions(), 7);
        assert_eq!(t.counts(), &[2, 3, 1, 1]);
        let mut none = order_fsm(0);
        none.transition(1, 0, 0).unwrap();
        assert!(none.audit().is_empty());
    }

    #[test]
    fn fsm_bad_construction() {
        assert!(TransitionTable::new(vec![], &[], 0, 4).is_err());
        let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
        assert!(TransitionTable::new(many, &[], 0, 4).is_err());
        let names = vec!["A".to_owned(), "B".to_owned()];
        assert!(TransitionTable::new(names.clone(), &[(0, 2)], 0, 4).is_err());
        assert!(TransitionTable::new(names.clone(), &[(0, 1)], 2, 4).is_err());
        let full: Vec<String> = (0..64).map(|i| i.to_string()).collect();
        let t = TransitionTable::new(full, &[(63, 63), (0, 63)], 63, 4).unwrap();
        assert!(t.is_allowed(63, 63).unwrap() && t.is_allowed(0, 63).unwrap());
    }
}
