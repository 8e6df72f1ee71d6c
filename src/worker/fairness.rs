//! Fairness between customers: at most `cap` objects of one subscription (API key) in flight,
//! so one customer's backlog cannot occupy every worker while others wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts of objects in flight per owner.
#[derive(Debug)]
pub struct Fairness {
    cap: usize,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One object's claim; released on drop.
#[derive(Debug)]
pub struct Claim {
    owner: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Fairness {
    /// At most `cap` (at least 1) claims per owner at once.
    #[must_use]
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            counts: Arc::default(),
        }
    }

    /// A claim for `owner`, or `None` when it has `cap` already.
    #[must_use]
    pub fn try_claim(&self, owner: &str) -> Option<Claim> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(owner.to_owned()).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Claim {
            owner: owner.to_owned(),
            counts: Arc::clone(&self.counts),
        })
    }

    /// Objects of `owner` in flight now.
    #[must_use]
    pub fn in_flight(&self, owner: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(owner).copied().unwrap_or(0)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_customer_at_its_cap_does_not_block_another() {
        let f = Fairness::new(2);
        let a1 = f.try_claim("a").expect("first");
        let _a2 = f.try_claim("a").expect("second");
        assert!(f.try_claim("a").is_none(), "a is at its cap");
        let _b = f.try_claim("b").expect("b is not blocked by a");
        drop(a1);
        assert_eq!(f.in_flight("a"), 1);
        assert!(f.try_claim("a").is_some(), "a slot came back");
    }

    #[test]
    fn released_claims_leave_no_entry_behind() {
        let f = Fairness::new(1);
        drop(f.try_claim("a"));
        assert_eq!(f.in_flight("a"), 0);
        assert!(f.counts.lock().expect("lock").is_empty());
    }
}
