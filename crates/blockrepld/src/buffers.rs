//! Reused payload buffers. A fresh buffer of a megabyte costs page faults and the kernel's
//! zeroing on every request (the allocator returns large blocks to the system); a buffer
//! that comes back here when the last view of its payload is dropped costs neither.

use std::sync::{Arc, Mutex};

use blockrepl::msg::Payload;

/// Buffers kept for reuse at most.
const KEEP: usize = 64;
/// Larger buffers are not kept.
const KEEP_MAX_BYTES: usize = 4 << 20;

/// A pool of byte buffers.
#[derive(Default)]
pub(crate) struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
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
    /// An empty buffer with room for at least `cap` bytes.
    pub(crate) fn take(&self, cap: usize) -> Vec<u8> {
        let found = {
            let mut free = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match free.iter().rposition(|b| b.capacity() >= cap) {
                Some(i) => Some(free.swap_remove(i)),
                None => free.pop(),
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
        if free.len() < KEEP {
            free.push(b);
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
        assert!(pool.free.lock().unwrap().is_empty(), "a view still holds the buffer");
        drop(piece);
        let again = pool.take(4096);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
    }
}
