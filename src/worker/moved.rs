//! The messages this process has already copied to the dead-letter queue.
//!
//! Dead-lettering is a copy, then a delete. When the delete fails (the endpoint is down), SQS
//! delivers the message again and it would be copied a second time: the soak test found one
//! poison message twice in the DLQ. Remembering the message IDs that were copied lets the
//! redelivered copy only be deleted. The memory is per process and bounded (the oldest IDs are
//! forgotten first), so a crash between the copy and the delete can still leave two copies;
//! `dlq redrive` moves only one of two equal bodies.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Message IDs remembered at most; about 60 bytes each.
pub const CAPACITY: usize = 10_000;

/// A bounded set of message IDs, oldest forgotten first.
#[derive(Debug)]
pub struct Moved {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Moved {
    /// An empty set holding at most `capacity` IDs.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Whether the message with this ID was copied to the DLQ by this process.
    pub fn contains(&self, message_id: &str) -> bool {
        self.lock().ids.contains(message_id)
    }

    /// Remembers that the message with this ID was copied to the DLQ.
    pub fn insert(&self, message_id: &str) {
        let mut inner = self.lock();
        if !inner.ids.insert(message_id.to_owned()) {
            return;
        }
        inner.order.push_back(message_id.to_owned());
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.ids.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The set holds no invariant a panic elsewhere could break.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_was_moved() {
        let moved = Moved::new(3);
        assert!(!moved.contains("a"));
        moved.insert("a");
        assert!(moved.contains("a"));
        assert!(!moved.contains("b"));
    }

    #[test]
    fn forgets_the_oldest_beyond_its_capacity() {
        let moved = Moved::new(2);
        moved.insert("a");
        moved.insert("b");
        moved.insert("a"); // already there: not a newer entry
        moved.insert("c");
        assert!(!moved.contains("a"));
        assert!(moved.contains("b") && moved.contains("c"));
        let inner = moved.lock();
        assert_eq!((inner.ids.len(), inner.order.len()), (2, 2));
    }
}
