//! The activity log: the set of 4 MiB extents that may hold writes not yet known to be on both
//! disks. A write into a cold extent first makes it hot in the persisted metadata; after a crash
//! of a Primary every hot extent is treated as out of sync.

use std::collections::BTreeMap;

/// Hot extents with their last use (an increasing counter).
#[derive(Clone, Debug)]
pub(crate) struct ActivityLog {
    hot: BTreeMap<u64, u64>,
    capacity: usize,
    clock: u64,
}

impl ActivityLog {
    pub(crate) fn new(capacity: u32, hot: &[u64]) -> Self {
        let mut al = Self { hot: BTreeMap::new(), capacity: capacity.max(1) as usize, clock: 0 };
        for &e in hot {
            al.clock += 1;
            al.hot.insert(e, al.clock);
        }
        al
    }

    pub(crate) fn extents(&self) -> Vec<u64> {
        self.hot.keys().copied().collect()
    }

    /// Marks the extents used; returns true when the hot set changed (metadata must be
    /// persisted before the write may be issued). Extents in `busy` are never evicted.
    pub(crate) fn activate(&mut self, extents: &[u64], busy: &dyn Fn(u64) -> bool) -> bool {
        let mut changed = false;
        for &e in extents {
            self.clock += 1;
            if self.hot.insert(e, self.clock).is_none() {
                changed = true;
            }
        }
        while self.hot.len() > self.capacity {
            let victim = self
                .hot
                .iter()
                .filter(|(e, _)| !extents.contains(e) && !busy(**e))
                .min_by_key(|(_, used)| **used)
                .map(|(e, _)| *e);
            match victim {
                Some(v) => {
                    self.hot.remove(&v);
                }
                None => break,
            }
        }
        changed
    }

    pub(crate) fn clear(&mut self) {
        self.hot.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_extents_need_a_metadata_update_and_lru_is_evicted() {
        let mut al = ActivityLog::new(2, &[]);
        assert!(al.activate(&[1], &|_| false));
        assert!(!al.activate(&[1], &|_| false));
        assert!(al.activate(&[2], &|_| false));
        assert!(al.activate(&[3], &|_| false));
        assert_eq!(al.extents(), vec![2, 3]);
        // An extent with writes in flight stays hot.
        assert!(al.activate(&[4], &|e| e == 2));
        assert_eq!(al.extents(), vec![2, 4]);
    }
}
