//! The per-peer dirty bitmap: one bit per 4 KiB block, set when the block may differ between
//! this copy and the peer's.

/// Out-of-sync blocks, one bit each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    blocks: u64,
    count: u64,
}

impl Bitmap {
    pub(crate) fn new(blocks: u64) -> Self {
        Self { words: vec![0; blocks.div_ceil(64) as usize], blocks, count: 0 }
    }

    /// Number of set bits.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn get(&self, b: u64) -> bool {
        b < self.blocks && self.words[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    pub(crate) fn set(&mut self, b: u64) {
        if b >= self.blocks {
            return;
        }
        let w = &mut self.words[(b / 64) as usize];
        let m = 1u64 << (b % 64);
        if *w & m == 0 {
            *w |= m;
            self.count += 1;
        }
    }

    pub(crate) fn clear(&mut self, b: u64) {
        if b >= self.blocks {
            return;
        }
        let w = &mut self.words[(b / 64) as usize];
        let m = 1u64 << (b % 64);
        if *w & m != 0 {
            *w &= !m;
            self.count -= 1;
        }
    }

    pub(crate) fn set_range(&mut self, start: u64, count: u64) {
        for b in start..start.saturating_add(count).min(self.blocks) {
            self.set(b);
        }
    }

    pub(crate) fn clear_range(&mut self, start: u64, count: u64) {
        for b in start..start.saturating_add(count).min(self.blocks) {
            self.clear(b);
        }
    }

    pub(crate) fn set_all(&mut self) {
        self.set_range(0, self.blocks);
    }

    /// Sets every block touched by the byte range.
    pub(crate) fn set_bytes(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset / crate::BLOCK_SIZE;
        let last = (offset + len - 1) / crate::BLOCK_SIZE;
        self.set_range(first, last - first + 1);
    }

    /// The first set bit at or after `from`.
    pub(crate) fn next_set(&self, from: u64) -> Option<u64> {
        let mut b = from;
        while b < self.blocks {
            let wi = (b / 64) as usize;
            let w = self.words[wi] >> (b % 64);
            if w != 0 {
                let found = b + u64::from(w.trailing_zeros());
                return (found < self.blocks).then_some(found);
            }
            b = (wi as u64 + 1) * 64;
        }
        None
    }

    /// Set bits as `(start, count)` runs in block order.
    pub(crate) fn runs(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut b = 0;
        while let Some(s) = self.next_set(b) {
            let mut e = s;
            while e < self.blocks && self.get(e) {
                e += 1;
            }
            out.push((s, e - s));
            b = e;
        }
        out
    }

    /// Sets every block of the runs; runs outside the bitmap are ignored.
    pub(crate) fn merge_runs(&mut self, runs: &[(u64, u64)]) {
        for &(s, c) in runs {
            self.set_range(s, c);
        }
    }

    pub(crate) fn union_count(&self, other: &Bitmap) -> u64 {
        self.words.iter().zip(&other.words).map(|(a, b)| u64::from((a | b).count_ones())).sum()
    }

    pub(crate) fn merge(&mut self, other: &Bitmap) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
        self.count = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn runs_compress_contiguous_blocks_and_merge_back() {
        let mut b = Bitmap::new(200);
        b.set_range(3, 5);
        b.set(64);
        b.set(65);
        b.set(199);
        assert_eq!(b.runs(), vec![(3, 5), (64, 2), (199, 1)]);
        assert_eq!(b.count(), 8);
        let mut c = Bitmap::new(200);
        c.merge_runs(&b.runs());
        assert_eq!(b, c);
        c.clear_range(0, 200);
        assert_eq!(c.count(), 0);
        assert_eq!(c.next_set(0), None);
    }

    #[test]
    fn byte_ranges_dirty_every_touched_block() {
        let mut b = Bitmap::new(10);
        b.set_bytes(4095, 2);
        assert_eq!(b.runs(), vec![(0, 2)]);
        b.set_bytes(8192, 4096);
        assert_eq!(b.runs(), vec![(0, 3)]);
    }

    proptest! {
        #[test]
        fn runs_round_trip(bits in proptest::collection::btree_set(0u64..500, 0..100)) {
            let mut b = Bitmap::new(500);
            for &x in &bits { b.set(x); }
            prop_assert_eq!(b.count(), bits.len() as u64);
            let mut c = Bitmap::new(500);
            c.merge_runs(&b.runs());
            prop_assert_eq!(&b, &c);
            let listed: Vec<u64> = b.runs().iter().flat_map(|&(s, n)| s..s + n).collect();
            prop_assert_eq!(listed, bits.into_iter().collect::<Vec<_>>());
        }
    }
}
