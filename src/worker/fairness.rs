//! Fairness between customers: at most `cap` objects of one subscription (API key) in flight,
//! so one customer's backlog cannot occupy every worker while others wait.
//!
//! Work-conserving: a message of a customer at its cap waits for that customer's next free
//! slot, as long as waiting messages hold at most `max_waiting` of the daemon's message slots;
//! only beyond that is it given back to the queue (deferred), so that the daemon keeps
//! receiving and other customers' messages behind the backlog still start. A customer alone
//! therefore runs at its cap without any deferral.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Counts of objects in flight per owner.
#[derive(Debug)]
pub struct Fairness {
    cap: usize,
    max_waiting: usize,
    waiting: AtomicUsize,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    released: Arc<Notify>,
}

/// One object's claim; released on drop.
#[derive(Debug)]
pub struct Claim {
    owner: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    released: Arc<Notify>,
}

impl Fairness {
    /// At most `cap` (at least 1) claims per owner at once, and at most `max_waiting`
    /// messages waiting for a claim.
    #[must_use]
    pub fn new(cap: usize, max_waiting: usize) -> Self {
        Self {
            cap: cap.max(1),
            max_waiting,
            waiting: AtomicUsize::new(0),
            counts: Arc::default(),
            released: Arc::new(Notify::new()),
        }
    }

    /// A claim for `owner`, waiting for one if there is room to wait; `None` when the owner is
    /// at its cap and `max_waiting` messages wait already (the caller defers the message).
    /// With `must_wait` it waits whatever the count (the message's last receives).
    pub async fn claim(&self, owner: &str, must_wait: bool) -> Option<Claim> {
        if let Some(claim) = self.try_claim(owner) {
            return Some(claim);
        }
        let admitted = self.waiting.fetch_add(1, Ordering::AcqRel) < self.max_waiting;
        if !admitted && !must_wait {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let claim = loop {
            let released = self.released.notified();
            if let Some(claim) = self.try_claim(owner) {
                break claim;
            }
            // The timeout covers a release between the check and the registration.
            let _ = tokio::time::timeout(Duration::from_millis(250), released).await;
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        Some(claim)
    }

    /// Messages waiting for a claim now.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
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
            released: Arc::clone(&self.released),
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
        drop(counts);
        self.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_customer_at_its_cap_does_not_block_another() {
        let f = Fairness::new(2, 0);
        let a1 = f.try_claim("a").expect("first");
        let _a2 = f.try_claim("a").expect("second");
        assert!(f.try_claim("a").is_none(), "a is at its cap");
        let _b = f.try_claim("b").expect("b is not blocked by a");
        drop(a1);
        assert_eq!(f.in_flight("a"), 1);
        assert!(f.try_claim("a").is_some(), "a slot came back");
    }

    #[tokio::test]
    async fn a_message_at_its_customers_cap_waits_for_a_slot_when_there_is_room_to_wait() {
        let f = Arc::new(Fairness::new(1, 1));
        let first = f.claim("a", false).await.expect("free slot");
        let waiter = {
            let f = Arc::clone(&f);
            tokio::spawn(async move { f.claim("a", false).await.is_some() })
        };
        while f.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // The one waiting place is taken: the next message is given back.
        assert!(f.claim("a", false).await.is_none());
        drop(first);
        assert!(
            waiter.await.expect("task"),
            "the waiter got the released slot"
        );
        assert_eq!(f.waiting(), 0);
    }

    #[tokio::test]
    async fn the_last_receives_wait_even_when_the_waiting_room_is_full() {
        let f = Arc::new(Fairness::new(1, 0));
        let first = f.claim("a", false).await.expect("free slot");
        assert!(f.claim("a", false).await.is_none());
        let waiter = {
            let f = Arc::clone(&f);
            tokio::spawn(async move { f.claim("a", true).await.is_some() })
        };
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiter.await.expect("task"));
    }

    #[test]
    fn released_claims_leave_no_entry_behind() {
        let f = Fairness::new(1, 0);
        drop(f.try_claim("a"));
        assert_eq!(f.in_flight("a"), 0);
        assert!(f.counts.lock().expect("lock").is_empty());
    }
}
