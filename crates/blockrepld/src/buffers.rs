//! Reused payload buffers. A fresh buffer of a megabyte costs page faults and the kernel's
//! zeroing on every request (the allocator returns large blocks to the system); a buffer
//! that comes back here when the last view of its payload is dropped costs neither.

use std::sync::{Arc, Mutex};

use blockrepl::msg::Payload;

/// Bytes kept for reuse at most (enough for the requests and pieces in flight on a busy
/// volume).
const KEEP_BYTES: usize = 32 << 20;
/// Buffers kept for reuse at most (bounds the search for a fitting one).
const KEEP_COUNT: usize = 64;
/// Larger buffers are not kept.
const KEEP_MAX_BYTES: usize = 4 << 20;

/// A pool of byte buffers.
#[derive(Default)]
pub(crate) struct Buffers {
    /// Free buffers and their total capacity.
    free: Mutex<(Vec<Vec<u8>>, usize)>,
}

/// A buffer that goes back to its pool when dropped.
struct Pooled {
    bytes: Vec<u8>,
    home: Arc<Buffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.home.give(std::mem::take(&mut self.bytes));
    }
}

impl Buffers {
    /// An empty buffer with room for at least `cap` bytes (the smallest free one that fits).
    pub(crate) fn take(&self, cap: usize) -> Vec<u8> {
        let found = {
            let mut free = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let fit = free.0.iter().enumerate().filter(|(_, b)| b.capacity() >= cap).min_by_key(|(_, b)| b.capacity());
            match fit.map(|(i, _)| i) {
                Some(i) => {
                    let b = free.0.swap_remove(i);
                    free.1 -= b.capacity();
                    Some(b)
                }
                None => None,
            }
        };
        let mut b = found.unwrap_or_default();
        b.clear();
        b.reserve(cap);
        b
    }

    fn give(&self, b: Vec<u8>) {
        if b.capacity() == 0 || b.capacity() > KEEP_MAX_BYTES {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.0.len() < KEEP_COUNT && free.1 + b.capacity() <= KEEP_BYTES {
            free.1 += b.capacity();
            free.0.push(b);
        }
    }

    /// Shares `bytes` as a payload whose buffer comes back here.
    pub(crate) fn share(self: &Arc<Self>, bytes: Vec<u8>) -> Payload {
        Payload::shared(Arc::new(Pooled { bytes, home: Arc::clone(self) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_payload_returns_its_buffer_for_reuse() {
        let pool = Arc::new(Buffers::default());
        let mut b = pool.take(1 << 20);
        b.extend_from_slice(&[7u8; 1000]);
        let ptr = b.as_ptr();
        let p = pool.share(b);
        let piece = p.slice(10..20);
        drop(p);
        assert_eq!(&piece[..], &[7u8; 10]);
        assert!(pool.free.lock().unwrap().0.is_empty(), "a view still holds the buffer");
        drop(piece);
        let again = pool.take(4096);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
    }

    #[test]
    fn the_smallest_fitting_buffer_is_reused_and_the_pool_is_bounded() {
        let pool = Arc::new(Buffers::default());
        let big = pool.take(1 << 20);
        let small = pool.take(8192);
        let small_ptr = small.as_ptr();
        drop(pool.share(big));
        drop(pool.share(small));
        let reused = pool.take(4096);
        assert_eq!(reused.as_ptr(), small_ptr);
        for _ in 0..(KEEP_BYTES >> 20) + 8 {
            drop(pool.share(Vec::with_capacity(1 << 20)));
        }
        assert!(pool.free.lock().unwrap().1 <= KEEP_BYTES);
    }
}
