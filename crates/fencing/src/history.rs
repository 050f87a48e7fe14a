//! Fence history: who asked to fence which node, which device did it, the result and when.
//!
//! Persisted as one file written atomically: encode into the versioned, CRC-checked
//! envelope of the `wire` crate, then [`durable::write_atomic`] (a crash leaves the old file or
//! the new one). A torn or corrupted file is rejected on load with
//! a clear error, never half-read. The history keeps the newest [`History::limit`] entries.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fencer::{FenceResult, Finished};

/// Envelope kind byte of a fence history file.
pub const HISTORY_KIND: u8 = 0x46;
/// Default number of entries kept.
pub const DEFAULT_LIMIT: usize = 500;

/// One finished fencing request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number, increasing.
    pub id: u64,
    /// The fenced node.
    pub target: String,
    /// `off`, `reboot` or `on`.
    pub action: String,
    /// Who asked (client name).
    pub requester: String,
    /// The node the request came from.
    pub origin: String,
    /// The node that executed it.
    pub executioner: String,
    /// Devices that confirmed (empty unless the result is `Done`).
    pub devices: Vec<String>,
    /// The result.
    pub result: FenceResult,
    /// Errors met on the way (level failures, refusals).
    pub errors: Vec<String>,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Wall-clock end, milliseconds since the Unix epoch.
    pub completed_unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    next_id: u64,
    entries: Vec<Entry>,
}

/// Why a history file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// Reading or writing failed.
    #[error("fence history {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is corrupt, truncated or from an incompatible version.
    #[error("fence history {path} is unreadable ({source}); move it aside to start a new history")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoder's reason.
        source: wire::DecodeError,
    },
    /// Encoding failed (an entry too large).
    #[error("fence history cannot be encoded: {0}")]
    Encode(#[from] wire::EncodeError),
}

/// The in-memory history.
#[derive(Clone, Debug)]
pub struct History {
    entries: VecDeque<Entry>,
    next_id: u64,
    limit: usize,
}

impl Default for History {
    fn default() -> Self {
        History::new(DEFAULT_LIMIT)
    }
}

impl History {
    /// An empty history keeping at most `limit` entries (at least one).
    pub fn new(limit: usize) -> History {
        History { entries: VecDeque::new(), next_id: 1, limit: limit.max(1) }
    }

    /// How many entries are kept.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Records a finished request; `start_unix_ms`/`end_unix_ms` are the wall-clock times
    /// the driver observed. Returns the new entry's id.
    pub fn record(&mut self, done: &Finished, executioner: &str, started_unix_ms: u64, completed_unix_ms: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_back(Entry {
            id,
            target: done.request.target.clone(),
            action: done.request.action.to_string(),
            requester: done.request.requester.clone(),
            origin: done.request.origin.clone(),
            executioner: executioner.to_owned(),
            devices: done.devices.clone(),
            result: done.result,
            errors: done.errors.clone(),
            started_unix_ms,
            completed_unix_ms,
        });
        while self.entries.len() > self.limit {
            self.entries.pop_front();
        }
        id
    }

    /// Entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The newest successful fence of `target`.
    pub fn last_success(&self, target: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.target == target && e.result == FenceResult::Done && e.action != "on")
    }

    /// Forgets the entries of `target` (all when `None`), like `stonith_admin --cleanup`.
    pub fn cleanup(&mut self, target: Option<&str>) {
        self.entries.retain(|e| target.is_some_and(|t| e.target != t));
    }

    /// Writes the history atomically to `path` (mode 0644).
    pub fn save(&self, path: &Path) -> Result<(), HistoryError> {
        let body = FileBody { next_id: self.next_id, entries: self.entries.iter().cloned().collect() };
        let bytes = wire::encode(HISTORY_KIND, &body)?;
        durable::write_atomic(path, &bytes, 0o644).map_err(|source| HistoryError::Io { path: path.to_owned(), source })
    }

    /// Loads a history; a missing file is an empty history.
    pub fn load(path: &Path, limit: usize) -> Result<History, HistoryError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::new(limit)),
            Err(source) => {
                return Err(HistoryError::Io { path: path.to_owned(), source });
            }
        };
        let body: FileBody = wire::decode(HISTORY_KIND, &bytes)
            .map_err(|source| HistoryError::Corrupt { path: path.to_owned(), source })?;
        let mut h = History::new(limit);
        h.next_id = body.next_id;
        h.entries = body.entries.into();
        while h.entries.len() > h.limit {
            h.entries.pop_front();
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Action;
    use crate::fencer::{FenceRequest, OpId};
    use wire::{Duration, Instant};

    fn finished(target: &str, result: FenceResult) -> Finished {
        Finished {
            op: OpId(1),
            request: FenceRequest {
                target: target.into(),
                action: Action::Reboot,
                requester: "controller".into(),
                origin: "node1".into(),
                allow_self: false,
                extra_delay: Duration::ZERO,
                timeout: Duration::from_secs(60),
            },
            result,
            devices: vec!["ipmi-node2".into()],
            level: None,
            delay: Duration::ZERO,
            started: Instant::ZERO,
            finished: Instant::ZERO,
            errors: vec![],
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fencing-history-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn history_survives_a_save_and_load_and_keeps_the_newest() {
        let dir = scratch("roundtrip");
        let path = dir.join("fence-history");
        let mut h = History::new(3);
        for (i, r) in
            [FenceResult::Failed, FenceResult::Done, FenceResult::Done, FenceResult::TimedOut].into_iter().enumerate()
        {
            h.record(&finished("node2", r), "node1", 1000 + i as u64, 2000 + i as u64);
        }
        h.save(&path).unwrap();
        let back = History::load(&path, 3).unwrap();
        let ids: Vec<u64> = back.entries().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3, 4]);
        assert_eq!(back.last_success("node2").unwrap().id, 3);
        assert_eq!(back.entries().next().unwrap().requester, "controller");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        let mut back = back;
        assert_eq!(back.record(&finished("node3", FenceResult::Done), "node1", 0, 0), 5);
        back.cleanup(Some("node2"));
        assert_eq!(back.entries().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_or_truncated_history_is_rejected_with_the_fix() {
        let dir = scratch("corrupt");
        let path = dir.join("fence-history");
        let mut h = History::default();
        h.record(&finished("node2", FenceResult::Done), "node1", 1, 2);
        h.save(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = History::load(&path, 10).unwrap_err();
        assert!(e.to_string().contains("move it aside"), "{e}");
        std::fs::write(&path, &bytes[..n / 2]).unwrap();
        assert!(matches!(History::load(&path, 10), Err(HistoryError::Corrupt { .. })));
        assert_eq!(History::load(&dir.join("missing"), 10).unwrap().entries().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
