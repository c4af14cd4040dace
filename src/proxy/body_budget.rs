//! The bound on request bodies held in memory at once (`server.max_buffered_bodies`).
//!
//! Bodies are buffered whole (the `model` must be read, and a retry resends the
//! body), so without a bound a few large concurrent requests take the process past
//! its memory limit and the kernel kills it, failing every request at once. Past the
//! bound a request gets a 503 with `retry-after` instead.
//!
//! The budget counts bytes: a [`BodyPermit`] grows as a body is read (by its
//! `content-length` up front, or chunk by chunk for a chunked body) and gives its
//! bytes back when dropped. The permit travels inside the body's buffer (see
//! `inbound`), so it is released when the last attempt's copy of the body is freed,
//! not when reading ends. The limit is read per request from the snapshot, so a
//! reload changes it for the requests that start after it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The bytes of request bodies held now, shared by every request of one proxy.
#[derive(Debug, Default)]
pub struct BodyBudget {
    held: AtomicUsize,
}

/// The budget has no room for this body now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted;

impl BodyBudget {
    /// A permit for no bytes yet.
    pub fn permit(self: &Arc<Self>) -> BodyPermit {
        BodyPermit { budget: Arc::clone(self), bytes: 0 }
    }

    /// Bytes held by all permits now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Bytes of one request body counted against the budget; returned when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyPermit {
    /// Counts `more` bytes, unless all permits together would then hold more than
    /// `limit`. Nothing is counted on failure.
    pub fn grow(&mut self, more: usize, limit: usize) -> Result<(), BudgetExhausted> {
        self.budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|&total| total <= limit)
            })
            .map_err(|_| BudgetExhausted)?;
        self.bytes += more;
        Ok(())
    }

    /// Gives back what this permit holds beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        if let Some(excess) = self.bytes.checked_sub(bytes) {
            self.budget.held.fetch_sub(excess, Ordering::AcqRel);
            self.bytes = bytes;
        }
    }

    /// Bytes this permit holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_share_the_limit_and_give_bytes_back() {
        let budget = Arc::new(BodyBudget::default());
        let mut a = budget.permit();
        let mut b = budget.permit();
        assert_eq!(a.grow(60, 100), Ok(()));
        assert_eq!(b.grow(50, 100), Err(BudgetExhausted));
        assert_eq!(b.grow(40, 100), Ok(()));
        assert_eq!(budget.held(), 100);
        assert_eq!(a.grow(usize::MAX, usize::MAX), Err(BudgetExhausted), "no overflow");
        drop(a);
        assert_eq!(budget.held(), 40);
        assert_eq!(b.grow(60, 100), Ok(()));
        assert_eq!(b.bytes(), 100);
        b.shrink_to(70);
        b.shrink_to(80);
        assert_eq!((b.bytes(), budget.held()), (70, 70));
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
