//! The replication engine of one volume on one node: a sans-IO state machine.
//!
//! Call [`Engine::handle`] with `now` and every input (application requests, local I/O
//! completions, link events, peer messages, timer ticks); execute the returned [`Effect`]s in
//! order; then call [`Engine::next_wakeup`] and deliver [`Input::Tick`] at that time.
//!
//! Ordering rules the driver must keep: `Send` effects go out on the link in the order they are
//! returned; `PersistMeta` effects are written in order and acknowledged with
//! [`Input::MetaPersisted`]; local I/O effects may run concurrently (the engine never issues two
//! overlapping writes at once).

use std::collections::{BTreeMap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wire::{Duration, Generation, Instant, NodeId};

use crate::al::ActivityLog;
use crate::bitmap::Bitmap;
use crate::handshake::{Decision, Refusal, decide};
use crate::msg::{Digest, Hello, Msg, Payload};
use crate::types::{
    AL_EXTENT_SIZE, BLOCK_SIZE, Config, ConnState, DiskState, Gi, IoError, META_VERSION, Meta, Protocol, REQUEST_MAX,
    ReplState, Role,
};

/// Identifies one application request (chosen by the driver, unique while in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReqId(pub u64);

/// Identifies one local I/O the engine asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IoId(pub u64);

/// Largest resync/verify unit in blocks (128 KiB).
const RUN_BLOCKS_MAX: u64 = 32;
/// Application I/O within this window counts as "active" for resync rate control.
const APP_ACTIVE_WINDOW: Duration = Duration::from_millis(100);
/// Bitmap chunk size in runs for the handshake.
const BITMAP_CHUNK_RUNS: usize = 4096;
/// A target persists its resync progress every this many cleared blocks.
const PROGRESS_PERSIST_BLOCKS: u64 = 256;
/// Blocks listed individually in a verify report.
const VERIFY_LIST_MAX: usize = 4096;

/// Something that happened.
#[derive(Debug)]
pub enum Input {
    /// Application write.
    Write {
        /// Request.
        req: ReqId,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        data: Payload,
        /// Force unit access: durable on both before completion.
        fua: bool,
    },
    /// Application write-zeroes or discard (reads back as zeroes).
    WriteZeroes {
        /// Request.
        req: ReqId,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Force unit access.
        fua: bool,
    },
    /// Application flush: everything completed before is made durable on both disks.
    Flush {
        /// Request.
        req: ReqId,
    },
    /// Application read.
    Read {
        /// Request.
        req: ReqId,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// A local I/O finished: `Ok(bytes)` (read data; empty for writes/flushes) or failed.
    LocalDone {
        /// Which.
        io: IoId,
        /// Outcome.
        result: Result<Vec<u8>, ()>,
    },
    /// Metadata up to `seq` is durable.
    MetaPersisted {
        /// Sequence.
        seq: u64,
    },
    /// The link to the peer is up and authenticated.
    LinkUp,
    /// The link broke.
    LinkDown,
    /// A message from the peer.
    Message(Msg),
    /// Timer.
    Tick,
}

/// Something the driver must do.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Effect {
    /// Write bytes to the backing store (with `fua`: durable before completion).
    LocalWrite {
        /// Completion id.
        io: IoId,
        /// Byte offset.
        offset: u64,
        /// Bytes (shared with the message to the peer: never copied).
        data: Payload,
        /// Durable before completion.
        fua: bool,
    },
    /// Zero a range of the backing store.
    LocalZero {
        /// Completion id.
        io: IoId,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Durable before completion.
        fua: bool,
    },
    /// Make all completed writes durable.
    LocalFlush {
        /// Completion id.
        io: IoId,
    },
    /// Read from the backing store.
    LocalRead {
        /// Completion id.
        io: IoId,
        /// Offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// Send to the peer (in order).
    Send(Msg),
    /// Close the link (the engine already considers it down).
    DropLink,
    /// Finish an application request (`Some(bytes)` for reads).
    Complete {
        /// Request.
        req: ReqId,
        /// Outcome.
        result: Result<Option<Vec<u8>>, IoError>,
    },
    /// Persist metadata atomically, then report [`Input::MetaPersisted`].
    PersistMeta {
        /// Sequence.
        seq: u64,
        /// Content.
        meta: Box<Meta>,
    },
}

/// Why an administrative command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Promotion needs up-to-date data.
    #[error(
        "cannot promote: local disk is {disk:?}; only UpToDate data may be promoted (use --force for a new volume)"
    )]
    NotUpToDate {
        /// Disk state.
        disk: DiskState,
    },
    /// The peer is Primary.
    #[error("cannot promote: the peer is Primary and dual-primary is not allowed; demote it first")]
    PeerIsPrimary,
    /// Demotion with application I/O in flight.
    #[error("cannot demote: {inflight} application requests are in flight; stop the application first")]
    Busy {
        /// Requests in flight.
        inflight: usize,
    },
    /// Verify needs an established connection.
    #[error("cannot verify: replication is {repl:?}, verify needs Established")]
    NotEstablished {
        /// Replication state.
        repl: ReplState,
    },
    /// Discard-my-data on a Primary.
    #[error("cannot discard local data while Primary; demote first")]
    DiscardOnPrimary,
}

/// What the last split brain looked like (for the operator's decision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrainReport {
    /// Blocks changed here since the split.
    pub local_changes: u64,
    /// Blocks changed on the peer since the split.
    pub peer_changes: u64,
    /// Blocks that differ (union of both): what the victim loses and what will be resynced.
    pub diverging_blocks: u64,
}

/// Online-verify result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Still running.
    pub running: bool,
    /// Blocks compared so far.
    pub checked_blocks: u64,
    /// Blocks found different (count).
    pub out_of_sync_count: u64,
    /// The first few differing blocks, in order.
    pub out_of_sync_blocks: Vec<u64>,
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Application writes completed.
    pub app_writes: u64,
    /// Application flushes completed.
    pub app_flushes: u64,
    /// Bytes of mirrored application data sent.
    pub data_bytes_sent: u64,
    /// Resync data bytes sent.
    pub resync_bytes_sent: u64,
    /// Resync data bytes received.
    pub resync_bytes_received: u64,
    /// Blocks resync found already equal by checksum (not sent).
    pub resync_blocks_equal: u64,
    /// Resyncs completed.
    pub resyncs_done: u64,
}

/// A snapshot of the volume's state (in DRBD's words).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub node: NodeId,
    /// The peer.
    pub peer: NodeId,
    /// Local role.
    pub role: Role,
    /// Peer role.
    pub peer_role: Role,
    /// Connection.
    pub conn: ConnState,
    /// Replication.
    pub repl: ReplState,
    /// Local disk.
    pub disk: DiskState,
    /// Peer disk.
    pub peer_disk: DiskState,
    /// Blocks marked out of sync.
    pub out_of_sync_blocks: u64,
    /// Resync progress in percent while syncing.
    pub sync_done_percent: Option<f64>,
    /// Generations.
    pub gi: Gi,
    /// Last error (refusal, protocol error, I/O error).
    pub last_error: Option<String>,
    /// Last split brain detected.
    pub split_brain: Option<SplitBrainReport>,
    /// Last online verify.
    pub verify: Option<VerifyReport>,
    /// Counters.
    pub stats: Stats,
    /// Promoted while connected, waiting for the peer to acknowledge (application I/O waits).
    #[serde(default)]
    pub promotion_pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    NotNeeded,
    Pending,
    Done,
    Failed,
}

#[derive(Debug)]
enum AppKind {
    Write { offset: u64, data: Payload, fua: bool },
    Zero { offset: u64, len: u64, fua: bool },
    Flush,
    Read { offset: u64, len: u32 },
}

#[derive(Debug)]
struct AppOp {
    req: ReqId,
    kind: AppKind,
}

#[derive(Debug)]
struct AppState {
    range: Option<(u64, u64)>,
    is_read: bool,
    is_flush: bool,
    /// For a flush: application writes completed when it was issued (what it makes durable).
    covers: u64,
    local: Part,
    peer: Part,
    data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    App(ReqId),
    /// Mirrored write from the peer (seq, fua handled by the write itself).
    PeerWrite {
        seq: u64,
    },
    PeerFlush {
        epoch: u64,
    },
    /// Resync data made durable before adopting the source's generations.
    ResyncFlush {
        gi: Gi,
    },
    PeerRead {
        id: u64,
    },
    RsWrite {
        start: u64,
        count: u64,
    },
    /// Source-side resync read.
    RsRead {
        start: u64,
    },
    /// Target-side csum comparison read.
    CsumCmp {
        start: u64,
    },
    /// Source-side verify read.
    VerifyRead {
        start: u64,
    },
    /// Target-side verify comparison read.
    VerifyCmp {
        start: u64,
    },
}

#[derive(Debug)]
enum PeerOp {
    Write { seq: u64, offset: u64, data: Payload, fua: bool },
    Zero { seq: u64, offset: u64, len: u64, fua: bool },
    Barrier { epoch: u64 },
    ResyncFlush { gi: Gi },
    Read { id: u64, offset: u64, len: u32 },
    RsData { start: u64, data: Vec<u8> },
    CsumCmp { start: u64, digests: Vec<Digest> },
    VerifyCmp { start: u64, digests: Vec<Digest> },
}

impl PeerOp {
    fn range(&self) -> Option<(u64, u64, bool)> {
        match self {
            PeerOp::Write { offset, data, .. } => Some((*offset, data.len() as u64, true)),
            PeerOp::Zero { offset, len, .. } => Some((*offset, *len, true)),
            PeerOp::Read { offset, len, .. } => Some((*offset, u64::from(*len), false)),
            PeerOp::RsData { start, data } => Some((start * BLOCK_SIZE, data.len() as u64, true)),
            PeerOp::CsumCmp { start, digests } | PeerOp::VerifyCmp { start, digests } => {
                Some((start * BLOCK_SIZE, digests.len() as u64 * BLOCK_SIZE, false))
            }
            PeerOp::Barrier { .. } | PeerOp::ResyncFlush { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Reading,
    AwaitReply,
    Sent { remaining: u64 },
}

#[derive(Debug)]
struct Run {
    count: u64,
    stage: Stage,
    data: Vec<u8>,
}

/// The driving side of a resync or a verify.
#[derive(Debug)]
struct Sweep {
    verify: bool,
    cursor: u64,
    runs: BTreeMap<u64, Run>,
    tokens: f64,
    refilled: Instant,
    total_blocks: u64,
    report: VerifyReport,
    finishing: bool,
}

/// One volume's replication engine on one node.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    rng: ChaCha8Rng,
    gi: Gi,
    persisted_disk: DiskState,
    primary_flag: bool,
    role: Role,
    conn: ConnState,
    repl: ReplState,
    disk: DiskState,
    peer_role: Role,
    peer_disk: DiskState,
    bitmap: Bitmap,
    crashed_primary: bool,
    discard_my_data: bool,
    link_up: bool,
    // Handshake.
    my_hello: Option<(Hello, Bitmap)>,
    peer_hello: Option<Hello>,
    peer_bitmap: Bitmap,
    // Metadata persistence.
    meta_seq: u64,
    meta_persisted: u64,
    meta_required: u64,
    al: ActivityLog,
    // Local I/O.
    next_io: u64,
    ios: BTreeMap<IoId, Purpose>,
    // Application side.
    submit: VecDeque<AppOp>,
    /// Promoted while connected; the peer has not acknowledged yet. Two promotions racing
    /// on a connected pair are arbitrated: the lower node id wins, the other reverts before
    /// it ran any application I/O.
    promotion_unconfirmed: bool,
    /// Application writes completed so far (starts at 1: whatever an earlier run of the
    /// daemon completed is not known to be durable).
    writes_completed: u64,
    /// Application writes a finished flush made durable.
    writes_durable: u64,
    app: BTreeMap<ReqId, AppState>,
    next_seq: u64,
    epoch: u64,
    peer_pending: BTreeMap<u64, (Option<ReqId>, u64, u64)>,
    barriers: BTreeMap<u64, Vec<ReqId>>,
    peer_reads: BTreeMap<u64, ReqId>,
    // Receiving side.
    recv: VecDeque<PeerOp>,
    recv_inflight: BTreeMap<IoId, (u64, u64, bool)>,
    recv_flushing: bool,
    target_cleared: u64,
    cmp_pending: BTreeMap<IoId, Vec<Digest>>,
    // Resync / verify.
    sweep: Option<Sweep>,
    target_total: u64,
    // Timers.
    last_rx: Instant,
    last_tx: Instant,
    last_app_io: Option<Instant>,
    // Reports.
    last_error: Option<String>,
    split_brain: Option<SplitBrainReport>,
    verify_report: Option<VerifyReport>,
    stats: Stats,
}

fn digest(block: &[u8]) -> Digest {
    let h = Sha256::digest(block);
    let mut d = [0u8; 16];
    d.copy_from_slice(&h[..16]);
    d
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.1 > 0 && b.1 > 0 && a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

impl Engine {
    /// Builds the engine from configuration and persisted metadata. `seed` feeds the generator
    /// of new generation identifiers. A node whose metadata says it was Primary crashed as
    /// Primary: its activity log is added to the bitmap. Call [`Engine::start`] next.
    pub fn new(cfg: Config, meta: Meta, seed: u64) -> Self {
        let blocks = cfg.blocks();
        let mut bitmap = Bitmap::new(blocks);
        bitmap.merge_runs(&meta.bitmap);
        // Every hot extent may hold writes that reached only one disk (a crash of either
        // role loses or keeps unsynced writes at random): out of sync until resynced.
        let crashed_primary = meta.primary;
        let per = AL_EXTENT_SIZE / BLOCK_SIZE;
        for &e in &meta.al {
            bitmap.set_range(e * per, per);
        }
        let disk = match meta.disk {
            DiskState::UpToDate | DiskState::Consistent => DiskState::UpToDate,
            DiskState::Outdated => DiskState::Outdated,
            DiskState::Diskless | DiskState::Failed => DiskState::Diskless,
            _ => DiskState::Inconsistent,
        };
        Self {
            al: ActivityLog::new(cfg.al_extents, &[]),
            rng: ChaCha8Rng::seed_from_u64(seed),
            gi: meta.gi,
            persisted_disk: meta.disk,
            primary_flag: meta.primary,
            role: Role::Secondary,
            conn: ConnState::StandAlone,
            repl: ReplState::Off,
            disk,
            peer_role: Role::Unknown,
            peer_disk: DiskState::DUnknown,
            peer_bitmap: Bitmap::new(blocks),
            bitmap,
            crashed_primary,
            discard_my_data: false,
            link_up: false,
            my_hello: None,
            peer_hello: None,
            meta_seq: 0,
            meta_persisted: 0,
            meta_required: 0,
            next_io: 1,
            ios: BTreeMap::new(),
            submit: VecDeque::new(),
            promotion_unconfirmed: false,
            writes_completed: 1,
            writes_durable: 0,
            app: BTreeMap::new(),
            next_seq: 1,
            epoch: 1,
            peer_pending: BTreeMap::new(),
            barriers: BTreeMap::new(),
            peer_reads: BTreeMap::new(),
            recv: VecDeque::new(),
            recv_inflight: BTreeMap::new(),
            recv_flushing: false,
            target_cleared: 0,
            cmp_pending: BTreeMap::new(),
            sweep: None,
            target_total: 0,
            last_rx: Instant::ZERO,
            last_tx: Instant::ZERO,
            last_app_io: None,
            last_error: None,
            split_brain: None,
            verify_report: None,
            stats: Stats::default(),
            cfg,
        }
    }

    /// Persists the metadata as loaded (with a crashed Primary's activity log folded into the
    /// bitmap) and starts connecting.
    pub fn start(&mut self, _now: Instant, out: &mut Vec<Effect>) {
        self.conn = ConnState::Connecting;
        self.persist(out);
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// True when the driver should keep (re)establishing the link.
    pub fn wants_link(&self) -> bool {
        self.conn != ConnState::StandAlone
    }

    /// The current metadata (what the last `PersistMeta` would contain now).
    pub fn meta(&self) -> Meta {
        Meta {
            version: META_VERSION,
            node: self.cfg.node,
            peer: self.cfg.peer,
            size_bytes: self.cfg.size_bytes,
            gi: self.gi,
            disk: self.persisted_disk,
            primary: self.primary_flag,
            al: self.al.extents(),
            bitmap: self.bitmap.runs(),
        }
    }

    /// A status snapshot.
    pub fn status(&self) -> Status {
        let sync_done_percent = match self.repl {
            ReplState::SyncSource | ReplState::PausedSyncS => self.sweep.as_ref().map(|s| {
                let left = self.bitmap.count();
                100.0 * (s.total_blocks.saturating_sub(left)) as f64 / s.total_blocks.max(1) as f64
            }),
            ReplState::SyncTarget | ReplState::PausedSyncT => {
                let left = self.bitmap.count();
                Some(100.0 * (self.target_total.saturating_sub(left)) as f64 / self.target_total.max(1) as f64)
            }
            _ => None,
        };
        let verify = match &self.sweep {
            Some(s) if s.verify => Some(s.report.clone()),
            _ => self.verify_report.clone(),
        };
        Status {
            node: self.cfg.node,
            peer: self.cfg.peer,
            role: self.role,
            peer_role: self.peer_role,
            conn: self.conn,
            repl: self.repl,
            disk: self.disk,
            peer_disk: self.peer_disk,
            out_of_sync_blocks: self.bitmap.count(),
            sync_done_percent,
            gi: self.gi,
            last_error: self.last_error.clone(),
            split_brain: self.split_brain.clone(),
            verify,
            stats: self.stats.clone(),
            promotion_pending: self.promotion_unconfirmed,
        }
    }

    /// When to deliver the next [`Input::Tick`].
    pub fn next_wakeup(&self) -> Option<Instant> {
        if !self.link_up {
            return None;
        }
        let mut t =
            self.last_tx.saturating_add(self.cfg.ping_interval).min(self.last_rx.saturating_add(self.cfg.timeout));
        if let Some(s) = &self.sweep
            && s.tokens <= 0.0
        {
            t = t.min(s.refilled.saturating_add(Duration::from_millis(5)));
        }
        Some(t)
    }

    // ----- Administrative commands -----

    /// Becomes Primary. `force` promotes Inconsistent or Outdated data (first promotion of a new
    /// volume: starts its first generation).
    pub fn promote(&mut self, now: Instant, force: bool, out: &mut Vec<Effect>) -> Result<(), AdminError> {
        if self.role == Role::Primary {
            return Ok(());
        }
        let established = self.conn == ConnState::Connected;
        if established && self.peer_role == Role::Primary && !self.cfg.dual_primary {
            return Err(AdminError::PeerIsPrimary);
        }
        let usable = self.disk == DiskState::UpToDate
            || (self.disk == DiskState::Diskless && established && self.peer_disk == DiskState::UpToDate);
        if !usable {
            if !force || self.disk == DiskState::Diskless || self.repl == ReplState::SyncTarget {
                return Err(AdminError::NotUpToDate { disk: self.disk });
            }
            if self.gi.current.0 == 0 {
                self.gi.current = self.new_generation();
            } else {
                self.new_current(false);
            }
            self.set_disk(DiskState::UpToDate);
        } else if !established && self.disk != DiskState::Diskless {
            // Promoted without the peer: writes from now on form a new generation.
            self.new_current(false);
        }
        let forced = !usable;
        self.role = Role::Primary;
        self.primary_flag = true;
        self.discard_my_data = false;
        self.last_app_io = None;
        self.persist(out);
        if forced && self.link_up {
            // The peer must learn the new generation through a handshake: reconnect, which
            // starts the full sync towards it.
            out.push(Effect::DropLink);
            self.link_lost(now, out);
        } else {
            // A connected peer may be promoting at the same moment: application I/O waits for
            // its acknowledgement (one round trip).
            self.promotion_unconfirmed = established && self.link_up && !self.cfg.dual_primary;
            self.send_state(out);
        }
        Ok(())
    }

    /// Lost a promotion race to the peer: back to Secondary before any application I/O ran.
    fn lose_promotion_race(&mut self, out: &mut Vec<Effect>) {
        tracing::warn!(node = %self.cfg.node, peer = %self.cfg.peer, "promotion race lost: staying Secondary");
        self.promotion_unconfirmed = false;
        self.role = Role::Secondary;
        self.primary_flag = false;
        self.crashed_primary = false;
        self.al.clear();
        self.persist(out);
        self.last_error = Some(format!(
            "promotion refused: node {} was promoted at the same moment and won the arbitration (the lower node id wins); this node stays Secondary",
            self.cfg.peer
        ));
        for op in std::mem::take(&mut self.submit) {
            out.push(Effect::Complete { req: op.req, result: Err(IoError::NotPrimary { role: Role::Secondary }) });
        }
    }

    /// Becomes Secondary.
    pub fn demote(&mut self, _now: Instant, out: &mut Vec<Effect>) -> Result<(), AdminError> {
        if self.role != Role::Primary {
            return Ok(());
        }
        if !self.app.is_empty() || !self.submit.is_empty() {
            return Err(AdminError::Busy { inflight: self.app.len() + self.submit.len() });
        }
        self.role = Role::Secondary;
        self.promotion_unconfirmed = false;
        self.primary_flag = false;
        self.crashed_primary = false;
        self.al.clear();
        self.persist(out);
        self.send_state(out);
        Ok(())
    }

    /// Allows connecting; with `discard_my_data` this node volunteers as the victim of a split
    /// brain found at the next handshake.
    pub fn connect(&mut self, _now: Instant, discard_my_data: bool, _out: &mut Vec<Effect>) -> Result<(), AdminError> {
        if discard_my_data && self.role == Role::Primary {
            return Err(AdminError::DiscardOnPrimary);
        }
        self.discard_my_data = discard_my_data;
        if self.conn == ConnState::StandAlone {
            self.conn = ConnState::Connecting;
        }
        Ok(())
    }

    /// Drops the link and stays StandAlone.
    pub fn disconnect(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.link_up {
            out.push(Effect::DropLink);
            self.link_lost(now, out);
        }
        self.conn = ConnState::StandAlone;
    }

    /// Starts an online verify driven by this node.
    pub fn start_verify(&mut self, now: Instant, out: &mut Vec<Effect>) -> Result<(), AdminError> {
        if self.conn != ConnState::Connected || self.repl != ReplState::Established {
            return Err(AdminError::NotEstablished { repl: self.repl });
        }
        self.repl = ReplState::VerifyS;
        self.sweep = Some(Sweep {
            verify: true,
            cursor: 0,
            runs: BTreeMap::new(),
            tokens: 0.0,
            refilled: now,
            total_blocks: self.cfg.blocks(),
            report: VerifyReport { running: true, ..VerifyReport::default() },
            finishing: false,
        });
        self.pump_sweep(now, out);
        Ok(())
    }

    // ----- Inputs -----

    /// Handles one input; appends effects to `out`.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Vec<Effect>) {
        match input {
            Input::Write { req, offset, data, fua } => {
                let len = data.len() as u64;
                self.app_request(now, req, Some((offset, len)), out, AppKind::Write { offset, data, fua });
            }
            Input::WriteZeroes { req, offset, len, fua } => {
                self.app_request(now, req, Some((offset, len)), out, AppKind::Zero { offset, len, fua })
            }
            Input::Flush { req } => self.app_request(now, req, None, out, AppKind::Flush),
            Input::Read { req, offset, len } => {
                self.app_request(now, req, Some((offset, u64::from(len))), out, AppKind::Read { offset, len })
            }
            Input::LocalDone { io, result } => self.local_done(now, io, result, out),
            Input::MetaPersisted { seq } => {
                self.meta_persisted = self.meta_persisted.max(seq);
                self.pump(now, out);
            }
            Input::LinkUp => self.link_came_up(now, out),
            Input::LinkDown => {
                if self.link_up {
                    self.link_lost(now, out);
                }
            }
            Input::Message(m) => {
                if self.link_up {
                    self.last_rx = now;
                    if let Err(e) = self.on_message(now, m, out) {
                        self.protocol_error(now, e, out);
                    }
                }
            }
            Input::Tick => self.tick(now, out),
        }
    }

    fn app_request(
        &mut self,
        now: Instant,
        req: ReqId,
        range: Option<(u64, u64)>,
        out: &mut Vec<Effect>,
        kind: AppKind,
    ) {
        if self.role != Role::Primary {
            out.push(Effect::Complete { req, result: Err(IoError::NotPrimary { role: self.role }) });
            return;
        }
        if let Some((offset, len)) = range
            && offset.checked_add(len).is_none_or(|e| e > self.cfg.size_bytes)
        {
            out.push(Effect::Complete {
                req,
                result: Err(IoError::OutOfRange { offset, len, size: self.cfg.size_bytes }),
            });
            return;
        }
        if let Some((_, len)) = range
            && len > REQUEST_MAX
            && !matches!(kind, AppKind::Zero { .. })
        {
            out.push(Effect::Complete { req, result: Err(IoError::TooLarge { len, max: REQUEST_MAX }) });
            return;
        }
        if !matches!(kind, AppKind::Read { .. } | AppKind::Flush) {
            self.last_app_io = Some(now);
        }
        self.submit.push_back(AppOp { req, kind });
        self.pump(now, out);
    }

    fn replicating(&self) -> bool {
        self.link_up
            && self.conn == ConnState::Connected
            && matches!(
                self.repl,
                ReplState::Established
                    | ReplState::SyncSource
                    | ReplState::PausedSyncS
                    | ReplState::VerifyS
                    | ReplState::VerifyT
                    | ReplState::SyncTarget
            )
            && !matches!(self.peer_disk, DiskState::Diskless | DiskState::Failed)
    }

    fn local_attached(&self) -> bool {
        !matches!(self.disk, DiskState::Diskless | DiskState::Failed)
    }

    fn io(&mut self, p: Purpose) -> IoId {
        let id = IoId(self.next_io);
        self.next_io += 1;
        self.ios.insert(id, p);
        id
    }

    fn pump(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.pump_submit(now, out);
        self.pump_recv(now, out);
        self.pump_sweep(now, out);
    }

    /// Ranges of application writes not yet finished (local or at the peer).
    fn app_write_busy(&self, r: (u64, u64)) -> bool {
        self.app.values().any(|a| !a.is_read && a.range.is_some_and(|x| overlaps(x, r)))
            || self.peer_pending.values().any(|&(_, o, l)| overlaps((o, l), r))
    }

    fn sweep_holds(&self, r: (u64, u64)) -> bool {
        self.sweep.as_ref().is_some_and(|s| {
            s.runs.iter().any(|(&start, run)| {
                !matches!(run.stage, Stage::Sent { .. }) && overlaps((start * BLOCK_SIZE, run.count * BLOCK_SIZE), r)
            })
        })
    }

    fn pump_submit(&mut self, now: Instant, out: &mut Vec<Effect>) {
        // While the handshake runs, application I/O waits (one round trip): the bitmap snapshot
        // sent in the Hello must stay exact.
        while let Some(op) = self.submit.front() {
            if (self.link_up && self.conn == ConnState::Connecting) || self.promotion_unconfirmed {
                return;
            }
            let range = match &op.kind {
                AppKind::Write { offset, data, .. } => Some((*offset, data.len() as u64)),
                AppKind::Zero { offset, len, .. } => Some((*offset, *len)),
                _ => None,
            };
            if let Some(r) = range {
                if self.app_write_busy(r) || self.sweep_holds(r) {
                    return;
                }
                if self.local_attached() && r.1 > 0 {
                    let first = r.0 / AL_EXTENT_SIZE;
                    let last = (r.0 + r.1 - 1) / AL_EXTENT_SIZE;
                    let extents: Vec<u64> = (first..=last).collect();
                    let busy_ranges: Vec<(u64, u64)> = self.app.values().filter_map(|a| a.range).collect();
                    let busy = |e: u64| busy_ranges.iter().any(|&x| overlaps(x, (e * AL_EXTENT_SIZE, AL_EXTENT_SIZE)));
                    if self.al.activate(&extents, &busy) {
                        self.persist(out);
                    }
                }
                if self.meta_persisted < self.meta_required {
                    return;
                }
            }
            let Some(op) = self.submit.pop_front() else {
                return;
            };
            self.dispatch(now, op, out);
        }
    }

    fn dispatch(&mut self, now: Instant, op: AppOp, out: &mut Vec<Effect>) {
        let rep = self.replicating();
        let attached = self.local_attached();
        let req = op.req;
        let mut st = AppState {
            range: None,
            is_read: false,
            is_flush: false,
            covers: self.writes_completed,
            local: Part::NotNeeded,
            peer: Part::NotNeeded,
            data: None,
        };
        match op.kind {
            AppKind::Write { offset, data, fua } => {
                if !attached && !rep {
                    out.push(Effect::Complete { req, result: Err(IoError::NoData { disk: self.disk }) });
                    return;
                }
                let len = data.len() as u64;
                st.range = Some((offset, len));
                if rep {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.peer_pending.insert(seq, (Some(req), offset, len));
                    st.peer = Part::Pending;
                    self.stats.data_bytes_sent += len;
                    self.send(now, Msg::Data { seq, epoch: self.epoch, offset, data: data.clone(), fua }, out);
                    if self.cfg.protocol == Protocol::A {
                        st.peer = Part::Done;
                    }
                } else {
                    self.bitmap.set_bytes(offset, len);
                }
                if attached {
                    let io = self.io(Purpose::App(req));
                    st.local = Part::Pending;
                    out.push(Effect::LocalWrite { io, offset, data, fua });
                }
            }
            AppKind::Zero { offset, len, fua } => {
                if !attached && !rep {
                    out.push(Effect::Complete { req, result: Err(IoError::NoData { disk: self.disk }) });
                    return;
                }
                st.range = Some((offset, len));
                if rep {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.peer_pending.insert(seq, (Some(req), offset, len));
                    st.peer = if self.cfg.protocol == Protocol::A { Part::Done } else { Part::Pending };
                    self.send(now, Msg::Zero { seq, epoch: self.epoch, offset, len, fua }, out);
                } else {
                    self.bitmap.set_bytes(offset, len);
                }
                if attached {
                    let io = self.io(Purpose::App(req));
                    st.local = Part::Pending;
                    out.push(Effect::LocalZero { io, offset, len, fua });
                }
            }
            AppKind::Flush => {
                st.is_flush = true;
                if self.writes_completed == self.writes_durable && !self.cfg.dual_primary {
                    // No write completed since the last flush finished: everything completed
                    // is already durable on every disk that has it (an O_DSYNC write through
                    // a loop device issues two flushes in a row; the second costs nothing).
                    self.app.insert(req, st);
                    self.try_complete(req, out);
                    return;
                }
                if attached {
                    let io = self.io(Purpose::App(req));
                    st.local = Part::Pending;
                    out.push(Effect::LocalFlush { io });
                }
                if rep {
                    st.peer = Part::Pending;
                    self.barriers.entry(self.epoch).or_default().push(req);
                    self.send(now, Msg::Barrier { epoch: self.epoch }, out);
                    self.epoch += 1;
                }
            }
            AppKind::Read { offset, len } => {
                st.is_read = true;
                st.range = Some((offset, u64::from(len)));
                if attached && self.disk == DiskState::UpToDate {
                    let io = self.io(Purpose::App(req));
                    st.local = Part::Pending;
                    out.push(Effect::LocalRead { io, offset, len });
                } else if rep && self.peer_disk == DiskState::UpToDate {
                    let id = req.0;
                    self.peer_reads.insert(id, req);
                    st.peer = Part::Pending;
                    self.send(now, Msg::ReadReq { id, offset, len }, out);
                } else {
                    out.push(Effect::Complete { req, result: Err(IoError::NoData { disk: self.disk }) });
                    return;
                }
            }
        }
        self.app.insert(req, st);
        self.try_complete(req, out);
    }

    fn try_complete(&mut self, req: ReqId, out: &mut Vec<Effect>) {
        let Some(st) = self.app.get(&req) else {
            return;
        };
        if st.local == Part::Pending || st.peer == Part::Pending {
            return;
        }
        let Some(st) = self.app.remove(&req) else {
            return;
        };
        let ok = st.local == Part::Done || st.peer == Part::Done;
        let result = if st.is_read {
            match st.data {
                Some(d) => Ok(Some(d)),
                None => Err(IoError::Io),
            }
        } else if ok || (st.local == Part::NotNeeded && st.peer == Part::NotNeeded) {
            if st.is_flush {
                self.stats.app_flushes += 1;
                if st.local != Part::Failed && st.peer != Part::Failed {
                    self.writes_durable = self.writes_durable.max(st.covers);
                }
            } else {
                self.stats.app_writes += 1;
                self.writes_completed += 1;
            }
            Ok(None)
        } else {
            if !st.is_flush {
                self.writes_completed += 1;
            }
            Err(IoError::Io)
        };
        out.push(Effect::Complete { req, result });
    }

    fn local_done(&mut self, now: Instant, io: IoId, result: Result<Vec<u8>, ()>, out: &mut Vec<Effect>) {
        let Some(purpose) = self.ios.remove(&io) else {
            return;
        };
        let recv_range = self.recv_inflight.remove(&io);
        if result.is_err() {
            self.detach(now, out);
        }
        match purpose {
            Purpose::App(req) => {
                let rep = self.replicating();
                let peer_up = self.peer_disk == DiskState::UpToDate;
                let Some(st) = self.app.get_mut(&req) else {
                    return;
                };
                match result {
                    Ok(bytes) => {
                        st.local = Part::Done;
                        if st.is_read {
                            st.data = Some(bytes);
                        }
                    }
                    Err(()) => {
                        st.local = Part::Failed;
                        if st.is_read
                            && rep
                            && peer_up
                            && let Some((offset, len)) = st.range
                        {
                            // Serve the read from the peer instead.
                            st.peer = Part::Pending;
                            self.peer_reads.insert(req.0, req);
                            self.send(now, Msg::ReadReq { id: req.0, offset, len: len as u32 }, out);
                        }
                    }
                }
                self.try_complete(req, out);
            }
            Purpose::PeerWrite { seq } => {
                let _ = recv_range;
                let m = if result.is_ok() { Msg::WriteAck { seq } } else { Msg::NegAck { seq } };
                self.send(now, m, out);
            }
            Purpose::PeerFlush { epoch } => {
                self.recv_flushing = false;
                self.send(now, Msg::BarrierAck { epoch }, out);
            }
            Purpose::ResyncFlush { gi } => {
                self.recv_flushing = false;
                if result.is_ok() && self.link_up && matches!(self.repl, ReplState::SyncTarget | ReplState::PausedSyncT)
                {
                    self.gi = gi;
                    self.bitmap.clear_range(0, self.cfg.blocks());
                    self.set_disk(DiskState::UpToDate);
                    self.crashed_primary = false;
                    self.repl = ReplState::Established;
                    self.stats.resyncs_done += 1;
                    tracing::info!(node = %self.cfg.node, "resync finished as target: UpToDate");
                    self.persist(out);
                    self.send(now, Msg::ResyncDoneAck, out);
                }
            }
            Purpose::PeerRead { id } => {
                self.send(now, Msg::ReadReply { id, data: result.ok() }, out);
            }
            Purpose::RsWrite { start, count } => {
                if result.is_ok() {
                    self.bitmap.clear_range(start, count);
                    self.target_cleared += count;
                    if self.target_cleared >= PROGRESS_PERSIST_BLOCKS {
                        self.target_cleared = 0;
                        self.persist(out);
                    }
                    self.send(now, Msg::RsAck { start, count }, out);
                }
            }
            Purpose::CsumCmp { start } | Purpose::VerifyCmp { start } => {
                let verify = matches!(purpose, Purpose::VerifyCmp { .. });
                let digests = self.cmp_pending.remove(&io).unwrap_or_default();
                if let Ok(bytes) = result {
                    let mut differing = Vec::new();
                    for (i, d) in digests.iter().enumerate() {
                        let lo = i * BLOCK_SIZE as usize;
                        let hi = lo + BLOCK_SIZE as usize;
                        let same = bytes.get(lo..hi).is_some_and(|b| digest(b) == *d);
                        let block = start + i as u64;
                        if same {
                            if !verify {
                                self.bitmap.clear(block);
                            }
                        } else {
                            differing.push(i as u32);
                            if verify {
                                self.bitmap.set(block);
                            }
                        }
                    }
                    let count = digests.len() as u64;
                    let m = if verify {
                        Msg::VerifyReply { start, count, differing }
                    } else {
                        Msg::RsCsumReply { start, count, differing }
                    };
                    self.send(now, m, out);
                }
            }
            Purpose::RsRead { start } | Purpose::VerifyRead { start } => {
                if let Ok(bytes) = result {
                    self.sweep_read_done(now, start, bytes, out);
                }
            }
        }
        self.pump(now, out);
    }

    fn detach(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if !self.local_attached() {
            return;
        }
        tracing::error!(node = %self.cfg.node, "backing i/o error: detaching, serving from the peer");
        self.last_error = Some("backing device i/o error: detached".into());
        self.disk = DiskState::Diskless;
        // Local data can no longer be trusted: a later attach needs a full sync.
        self.gi = Gi::default();
        self.persisted_disk = DiskState::Inconsistent;
        self.persist(out);
        if self.sweep.is_some() {
            // A resync or verify cannot continue without a disk: reconnect to renegotiate.
            self.sweep = None;
            if self.link_up {
                out.push(Effect::DropLink);
                self.link_lost(now, out);
            }
        }
        self.send_state(out);
    }

    // ----- Link -----

    fn link_came_up(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.conn == ConnState::StandAlone {
            out.push(Effect::DropLink);
            return;
        }
        self.link_up = true;
        self.conn = ConnState::Connecting;
        self.repl = ReplState::WFBitMap;
        self.last_rx = now;
        self.peer_hello = None;
        self.peer_bitmap = Bitmap::new(self.cfg.blocks());
        let hello = Hello {
            node: self.cfg.node,
            expects: self.cfg.peer,
            size_bytes: self.cfg.size_bytes,
            gi: self.gi,
            role: self.role,
            disk: self.disk,
            crashed_primary: self.crashed_primary,
            discard_my_data: self.discard_my_data,
            dual_primary: self.cfg.dual_primary,
            dirty_blocks: self.bitmap.count(),
        };
        self.send(now, Msg::Hello(hello.clone()), out);
        let runs = self.bitmap.runs();
        let mut chunks = runs.chunks(BITMAP_CHUNK_RUNS).peekable();
        if chunks.peek().is_none() {
            self.send(now, Msg::Bitmap { runs: Vec::new(), last: true }, out);
        }
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            self.send(now, Msg::Bitmap { runs: c.to_vec(), last }, out);
        }
        self.my_hello = Some((hello, self.bitmap.clone()));
    }

    fn link_lost(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let was_connected = self.conn == ConnState::Connected;
        // A promotion the peer never acknowledged stands: this node is a Primary that lost
        // its peer (a peer promoted meanwhile is a split brain the next handshake finds).
        self.promotion_unconfirmed = false;
        self.link_up = false;
        if self.conn != ConnState::StandAlone {
            self.conn = ConnState::Connecting;
        }
        let was_target = matches!(self.repl, ReplState::SyncTarget | ReplState::PausedSyncT);
        // Only a peer that held up-to-date data could be promoted behind our back.
        let peer_was_current = self.peer_disk == DiskState::UpToDate;
        self.repl = ReplState::Off;
        self.peer_role = Role::Unknown;
        self.peer_disk = DiskState::DUnknown;
        self.my_hello = None;
        self.peer_hello = None;
        // Writes the peer may not have: out of sync.
        let pending = std::mem::take(&mut self.peer_pending);
        for (_, (req, offset, len)) in pending {
            self.bitmap.set_bytes(offset, len);
            if let Some(req) = req
                && let Some(st) = self.app.get_mut(&req)
                && st.peer == Part::Pending
            {
                st.peer = Part::NotNeeded;
            }
        }
        let barriers = std::mem::take(&mut self.barriers);
        for req in barriers.into_values().flatten() {
            if let Some(st) = self.app.get_mut(&req) {
                st.peer = Part::NotNeeded;
            }
        }
        let reads = std::mem::take(&mut self.peer_reads);
        for req in reads.into_values() {
            if let Some(st) = self.app.get_mut(&req) {
                st.peer = Part::Failed;
            }
        }
        let reqs: Vec<ReqId> = self.app.keys().copied().collect();
        for r in reqs {
            self.try_complete(r, out);
        }
        // Writes already received are still applied: with protocol B the Primary may have
        // completed them.
        if let Some(s) = self.sweep.take()
            && s.verify
        {
            let mut rep = s.report;
            rep.running = false;
            self.verify_report = Some(rep);
        }
        if self.role == Role::Primary && was_connected && peer_was_current && self.local_attached() {
            // A Primary that loses its peer starts a new generation: a promoted peer would
            // otherwise look identical.
            self.new_current(true);
        }
        if was_target || was_connected {
            self.persist(out);
        }
        self.pump(now, out);
    }

    fn protocol_error(&mut self, now: Instant, e: String, out: &mut Vec<Effect>) {
        tracing::warn!(node = %self.cfg.node, error = %e, "protocol error: dropping the link");
        self.last_error = Some(format!("protocol error: {e}"));
        out.push(Effect::DropLink);
        self.link_lost(now, out);
    }

    fn send(&mut self, now: Instant, m: Msg, out: &mut Vec<Effect>) {
        if self.link_up {
            self.last_tx = now;
            out.push(Effect::Send(m));
        }
    }

    fn send_state(&mut self, out: &mut Vec<Effect>) {
        if self.link_up && self.conn == ConnState::Connected {
            out.push(Effect::Send(Msg::State { role: self.role, disk: self.disk }));
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if !self.link_up {
            return;
        }
        if now.saturating_since(self.last_rx) >= self.cfg.timeout {
            self.last_error =
                Some(format!("peer silent for {} ms: network failure", now.saturating_since(self.last_rx).as_millis()));
            out.push(Effect::DropLink);
            self.link_lost(now, out);
            return;
        }
        if now.saturating_since(self.last_tx) >= self.cfg.ping_interval {
            self.send(now, Msg::Ping, out);
        }
        self.pump_sweep(now, out);
    }

    // ----- Generations and metadata -----

    fn new_generation(&mut self) -> Generation {
        loop {
            let g = Generation(self.rng.random::<u64>());
            if g.0 != 0 && g != self.gi.current && g != self.gi.bitmap {
                return g;
            }
        }
    }

    fn new_current(&mut self, by_primary: bool) {
        let g = self.new_generation();
        if self.gi.bitmap.0 == 0 {
            self.gi.bitmap = self.gi.current;
            self.gi.bitmap_by_primary = by_primary;
        } else {
            self.gi.push_history(self.gi.current);
        }
        self.gi.current = g;
    }

    fn set_disk(&mut self, d: DiskState) {
        self.disk = d;
        self.persisted_disk = match d {
            DiskState::Diskless | DiskState::Failed => DiskState::Inconsistent,
            other => other,
        };
    }

    fn persist(&mut self, out: &mut Vec<Effect>) {
        self.meta_seq += 1;
        self.meta_required = self.meta_seq;
        out.push(Effect::PersistMeta { seq: self.meta_seq, meta: Box::new(self.meta()) });
    }

    // ----- Messages -----

    fn check_range(&self, offset: u64, len: u64) -> Result<(), String> {
        if offset.checked_add(len).is_none_or(|e| e > self.cfg.size_bytes) {
            return Err(format!(
                "peer sent a request at offset {offset} length {len} beyond the {}-byte volume",
                self.cfg.size_bytes
            ));
        }
        Ok(())
    }

    fn accepts_data(&self) -> Result<(), String> {
        if self.conn != ConnState::Connected {
            return Err("data before the handshake completed".into());
        }
        if self.role == Role::Primary && !self.cfg.dual_primary {
            return Err("peer mirrors writes to a Primary without dual-primary".into());
        }
        Ok(())
    }

    fn on_message(&mut self, now: Instant, m: Msg, out: &mut Vec<Effect>) -> Result<(), String> {
        match m {
            Msg::Hello(h) => {
                if self.conn != ConnState::Connecting || self.peer_hello.is_some() {
                    return Err("unexpected Hello".into());
                }
                if h.node != self.cfg.peer || h.expects != self.cfg.node {
                    let r = Refusal::WrongPeer { expected: self.cfg.peer.0, found: h.node.0 };
                    self.refuse(now, r, out);
                    return Ok(());
                }
                self.peer_hello = Some(h);
            }
            Msg::Bitmap { runs, last } => {
                if self.conn != ConnState::Connecting || self.peer_hello.is_none() {
                    return Err("unexpected Bitmap".into());
                }
                if runs.iter().any(|&(s, c)| s.checked_add(c).is_none_or(|e| e > self.cfg.blocks())) {
                    return Err("bitmap run beyond the volume".into());
                }
                self.peer_bitmap.merge_runs(&runs);
                if last {
                    self.handshake_done(now, out);
                }
            }
            Msg::State { role, disk } => {
                if self.conn != ConnState::Connected {
                    return Err("State before the handshake completed".into());
                }
                if role == Role::Primary && self.role == Role::Primary && !self.cfg.dual_primary {
                    if !self.promotion_unconfirmed {
                        let r = Refusal::TwoPrimaries;
                        self.refuse(now, r, out);
                        return Ok(());
                    }
                    // Both promoted at the same moment: the lower node id wins.
                    if self.cfg.node < self.cfg.peer {
                        return Ok(());
                    }
                    self.lose_promotion_race(out);
                    self.send_state(out);
                }
                let newly_primary = role == Role::Primary && self.peer_role != Role::Primary;
                self.peer_role = role;
                self.peer_disk = disk;
                if newly_primary && !self.cfg.dual_primary {
                    self.send(now, Msg::PromoteAck, out);
                }
            }
            Msg::Data { seq, offset, data, fua, .. } => {
                self.accepts_data()?;
                self.check_range(offset, data.len() as u64)?;
                if self.cfg.protocol == Protocol::B {
                    self.send(now, Msg::RecvAck { seq }, out);
                }
                self.recv.push_back(PeerOp::Write { seq, offset, data, fua });
            }
            Msg::Zero { seq, offset, len, fua, .. } => {
                self.accepts_data()?;
                self.check_range(offset, len)?;
                if self.cfg.protocol == Protocol::B {
                    self.send(now, Msg::RecvAck { seq }, out);
                }
                self.recv.push_back(PeerOp::Zero { seq, offset, len, fua });
            }
            Msg::Barrier { epoch } => {
                self.accepts_data()?;
                self.recv.push_back(PeerOp::Barrier { epoch });
            }
            Msg::RecvAck { seq } => {
                let Some(&(req, _, _)) = self.peer_pending.get(&seq) else {
                    return Err(format!("RecvAck for unknown write {seq}"));
                };
                if let Some(req) = req
                    && let Some(st) = self.app.get_mut(&req)
                    && st.peer == Part::Pending
                {
                    st.peer = Part::Done;
                    self.try_complete(req, out);
                }
            }
            Msg::WriteAck { seq } | Msg::NegAck { seq } => {
                let neg = matches!(m, Msg::NegAck { .. });
                let Some((req, offset, len)) = self.peer_pending.remove(&seq) else {
                    return Err(format!("ack for unknown write {seq}"));
                };
                if neg {
                    self.bitmap.set_bytes(offset, len);
                }
                if let Some(req) = req
                    && let Some(st) = self.app.get_mut(&req)
                    && st.peer == Part::Pending
                {
                    st.peer = if neg { Part::Failed } else { Part::Done };
                    self.try_complete(req, out);
                }
            }
            Msg::BarrierAck { epoch } => {
                let Some(reqs) = self.barriers.remove(&epoch) else {
                    return Err(format!("BarrierAck for unknown epoch {epoch}"));
                };
                for req in reqs {
                    if let Some(st) = self.app.get_mut(&req) {
                        st.peer = Part::Done;
                    }
                    self.try_complete(req, out);
                }
            }
            Msg::ReadReq { id, offset, len } => {
                if self.conn != ConnState::Connected || self.disk != DiskState::UpToDate {
                    self.send(now, Msg::ReadReply { id, data: None }, out);
                } else {
                    self.check_range(offset, u64::from(len))?;
                    self.recv.push_back(PeerOp::Read { id, offset, len });
                }
            }
            Msg::ReadReply { id, data } => {
                let Some(req) = self.peer_reads.remove(&id) else {
                    return Err(format!("ReadReply for unknown read {id}"));
                };
                if let Some(st) = self.app.get_mut(&req) {
                    match data {
                        Some(d) if st.range.is_some_and(|r| r.1 == d.len() as u64) => {
                            st.peer = Part::Done;
                            st.data = Some(d);
                        }
                        _ => st.peer = Part::Failed,
                    }
                }
                self.try_complete(req, out);
            }
            Msg::RsData { start, data } => {
                if !matches!(self.repl, ReplState::SyncTarget | ReplState::PausedSyncT) {
                    return Err("resync data while not SyncTarget".into());
                }
                if data.is_empty() || !(data.len() as u64).is_multiple_of(BLOCK_SIZE) {
                    return Err(format!("resync data of {} bytes", data.len()));
                }
                self.check_range(start.saturating_mul(BLOCK_SIZE), data.len() as u64)?;
                self.stats.resync_bytes_received += data.len() as u64;
                self.recv.push_back(PeerOp::RsData { start, data });
            }
            Msg::RsCsum { start, digests } => {
                if !matches!(self.repl, ReplState::SyncTarget | ReplState::PausedSyncT) {
                    return Err("resync checksums while not SyncTarget".into());
                }
                self.check_range(start.saturating_mul(BLOCK_SIZE), digests.len() as u64 * BLOCK_SIZE)?;
                self.recv.push_back(PeerOp::CsumCmp { start, digests });
            }
            Msg::VerifyReq { start, digests } => {
                if self.conn != ConnState::Connected
                    || !matches!(self.repl, ReplState::Established | ReplState::VerifyT)
                {
                    return Err("verify request while not Established".into());
                }
                self.check_range(start.saturating_mul(BLOCK_SIZE), digests.len() as u64 * BLOCK_SIZE)?;
                self.repl = ReplState::VerifyT;
                self.recv.push_back(PeerOp::VerifyCmp { start, digests });
            }
            Msg::VerifyDone { out_of_sync } => {
                if self.repl == ReplState::VerifyT {
                    self.repl = ReplState::Established;
                }
                let _ = out_of_sync;
            }
            Msg::RsAck { start, count } => self.sweep_ack(now, start, count, None, out)?,
            Msg::RsCsumReply { start, count, differing } | Msg::VerifyReply { start, count, differing } => {
                self.sweep_ack(now, start, count, Some(differing), out)?
            }
            Msg::ResyncDone { gi } => {
                if !matches!(self.repl, ReplState::SyncTarget | ReplState::PausedSyncT) {
                    return Err("ResyncDone while not SyncTarget".into());
                }
                // The resync data must be durable before this copy calls itself UpToDate.
                self.recv.push_back(PeerOp::ResyncFlush { gi });
            }
            Msg::ResyncDoneAck => {
                if !self.sweep.as_ref().is_some_and(|s| s.finishing) {
                    return Err("ResyncDoneAck without a finishing resync".into());
                }
                self.sweep = None;
                if self.gi.bitmap.0 != 0 {
                    self.gi.push_history(self.gi.bitmap);
                    self.gi.bitmap = Generation(0);
                }
                self.crashed_primary = false;
                self.repl = ReplState::Established;
                self.peer_disk = DiskState::UpToDate;
                self.stats.resyncs_done += 1;
                tracing::info!(node = %self.cfg.node, "resync finished as source");
                self.persist(out);
            }
            Msg::PromoteAck => {
                // The pump below starts the application I/O that waited.
                self.promotion_unconfirmed = false;
            }
            Msg::Ping => self.send(now, Msg::Pong, out),
            Msg::Pong => {}
        }
        self.pump(now, out);
        Ok(())
    }

    fn refuse(&mut self, now: Instant, r: Refusal, out: &mut Vec<Effect>) {
        tracing::warn!(node = %self.cfg.node, reason = %r, "connection refused");
        self.last_error = Some(r.to_string());
        out.push(Effect::DropLink);
        self.link_lost(now, out);
        self.conn = ConnState::StandAlone;
    }

    fn handshake_done(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let (Some((mine, my_bits)), Some(peer)) = (self.my_hello.clone(), self.peer_hello.clone()) else {
            return;
        };
        let union = my_bits.union_count(&self.peer_bitmap);
        let decision = decide(&mine, &peer, &self.cfg.split_brain, union);
        tracing::info!(node = %self.cfg.node, ?decision, "handshake");
        let is_sb = |d: &Decision| {
            matches!(
                d,
                Decision::Source { after_split_brain: true, .. }
                    | Decision::Target { after_split_brain: true, .. }
                    | Decision::Refuse(Refusal::SplitBrain { .. })
            )
        };
        if is_sb(&decision) {
            self.split_brain = Some(SplitBrainReport {
                local_changes: mine.dirty_blocks,
                peer_changes: peer.dirty_blocks,
                diverging_blocks: union,
            });
        }
        if let Decision::Refuse(r) = decision {
            self.refuse(now, r, out);
            return;
        }
        self.conn = ConnState::Connected;
        self.peer_role = peer.role;
        self.peer_disk = peer.disk;
        self.discard_my_data = false;
        match decision {
            Decision::InSync | Decision::BothFresh | Decision::Refuse(_) => {
                self.repl = ReplState::Established;
                self.bitmap.clear_range(0, self.cfg.blocks());
                if self.local_attached() && self.peer_disk != DiskState::Diskless {
                    if self.gi.bitmap.0 != 0 {
                        self.gi.push_history(self.gi.bitmap);
                        self.gi.bitmap = Generation(0);
                    }
                    self.crashed_primary = false;
                }
                self.persist(out);
            }
            Decision::Source { full, .. } => {
                if full {
                    self.bitmap.set_all();
                } else {
                    self.bitmap.merge(&self.peer_bitmap);
                }
                self.repl = ReplState::SyncSource;
                self.peer_disk = DiskState::Inconsistent;
                self.sweep = Some(Sweep {
                    verify: false,
                    cursor: 0,
                    runs: BTreeMap::new(),
                    tokens: 0.0,
                    refilled: now,
                    total_blocks: self.bitmap.count(),
                    report: VerifyReport::default(),
                    finishing: false,
                });
                tracing::info!(node = %self.cfg.node, blocks = self.bitmap.count(), "resync started as source");
                self.persist(out);
            }
            Decision::Target { full, .. } => {
                if full {
                    self.bitmap.set_all();
                } else {
                    self.bitmap.merge(&self.peer_bitmap);
                }
                self.target_total = self.bitmap.count();
                self.repl = ReplState::SyncTarget;
                self.set_disk(DiskState::Inconsistent);
                self.crashed_primary = false;
                // Inconsistent must be durable before any resync block lands.
                self.persist(out);
            }
        }
        self.pump(now, out);
    }

    // ----- Receiving side -----

    fn pump_recv(&mut self, now: Instant, out: &mut Vec<Effect>) {
        while let Some(op) = self.recv.front() {
            if self.recv_flushing {
                return;
            }
            if let PeerOp::Barrier { .. } | PeerOp::ResyncFlush { .. } = op {
                // Drain: every earlier write completes before the flush.
                if self.recv_inflight.values().any(|&(_, _, w)| w) {
                    return;
                }
            } else if let Some((o, l, is_write)) = op.range() {
                let conflict =
                    self.recv_inflight.values().any(|&(io, il, iw)| (is_write || iw) && overlaps((o, l), (io, il)));
                if conflict {
                    return;
                }
                if is_write && matches!(op, PeerOp::Write { .. } | PeerOp::Zero { .. }) && l > 0 {
                    // Mirrored writes are covered by the activity log too: a crash of this node
                    // may lose them from its volatile cache.
                    let extents: Vec<u64> = (o / AL_EXTENT_SIZE..=(o + l - 1) / AL_EXTENT_SIZE).collect();
                    let busy_ranges: Vec<(u64, u64)> = self.recv_inflight.values().map(|&(a, b, _)| (a, b)).collect();
                    let busy = |e: u64| busy_ranges.iter().any(|&x| overlaps(x, (e * AL_EXTENT_SIZE, AL_EXTENT_SIZE)));
                    if self.al.activate(&extents, &busy) {
                        self.persist(out);
                    }
                }
                if is_write && self.meta_persisted < self.meta_required {
                    return;
                }
            }
            let Some(op) = self.recv.pop_front() else {
                return;
            };
            if !self.local_attached() {
                self.recv_without_disk(now, op, out);
                continue;
            }
            let range = op.range();
            let io = match op {
                PeerOp::Write { seq, offset, data, fua } => {
                    let io = self.io(Purpose::PeerWrite { seq });
                    out.push(Effect::LocalWrite { io, offset, data, fua });
                    io
                }
                PeerOp::Zero { seq, offset, len, fua } => {
                    let io = self.io(Purpose::PeerWrite { seq });
                    out.push(Effect::LocalZero { io, offset, len, fua });
                    io
                }
                PeerOp::Barrier { epoch } => {
                    let io = self.io(Purpose::PeerFlush { epoch });
                    self.recv_flushing = true;
                    out.push(Effect::LocalFlush { io });
                    continue;
                }
                PeerOp::ResyncFlush { gi } => {
                    let io = self.io(Purpose::ResyncFlush { gi });
                    self.recv_flushing = true;
                    out.push(Effect::LocalFlush { io });
                    continue;
                }
                PeerOp::Read { id, offset, len } => {
                    let io = self.io(Purpose::PeerRead { id });
                    out.push(Effect::LocalRead { io, offset, len });
                    io
                }
                PeerOp::RsData { start, data } => {
                    let count = data.len() as u64 / BLOCK_SIZE;
                    let io = self.io(Purpose::RsWrite { start, count });
                    out.push(Effect::LocalWrite { io, offset: start * BLOCK_SIZE, data: data.into(), fua: false });
                    io
                }
                PeerOp::CsumCmp { start, digests } => {
                    let io = self.io(Purpose::CsumCmp { start });
                    self.cmp_pending.insert(io, digests.clone());
                    out.push(Effect::LocalRead {
                        io,
                        offset: start * BLOCK_SIZE,
                        len: (digests.len() as u64 * BLOCK_SIZE) as u32,
                    });
                    io
                }
                PeerOp::VerifyCmp { start, digests } => {
                    let io = self.io(Purpose::VerifyCmp { start });
                    self.cmp_pending.insert(io, digests.clone());
                    out.push(Effect::LocalRead {
                        io,
                        offset: start * BLOCK_SIZE,
                        len: (digests.len() as u64 * BLOCK_SIZE) as u32,
                    });
                    io
                }
            };
            if let Some(r) = range {
                self.recv_inflight.insert(io, r);
            }
        }
    }

    fn recv_without_disk(&mut self, now: Instant, op: PeerOp, out: &mut Vec<Effect>) {
        let m = match op {
            PeerOp::Write { seq, .. } | PeerOp::Zero { seq, .. } => Msg::NegAck { seq },
            PeerOp::Barrier { epoch } => Msg::BarrierAck { epoch },
            PeerOp::ResyncFlush { .. } => return,
            PeerOp::Read { id, .. } => Msg::ReadReply { id, data: None },
            // A resync or verify towards a diskless node cannot proceed: the link is reset by
            // the detach path.
            PeerOp::RsData { .. } | PeerOp::CsumCmp { .. } | PeerOp::VerifyCmp { .. } => return,
        };
        self.send(now, m, out);
    }

    // ----- Resync and verify, driving side -----

    fn pump_sweep(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if !self.link_up || self.conn != ConnState::Connected || !self.local_attached() {
            return;
        }
        let app_active = self.last_app_io.is_some_and(|t| now.saturating_since(t) < APP_ACTIVE_WINDOW);
        let blocks = self.cfg.blocks();
        let Some(mut s) = self.sweep.take() else {
            return;
        };
        if s.finishing {
            self.sweep = Some(s);
            return;
        }
        let rate =
            if app_active { self.cfg.resync_rate_min_bytes_per_sec } else { self.cfg.resync_rate_max_bytes_per_sec };
        if rate == 0 {
            s.tokens = f64::MAX;
        } else {
            if s.tokens == f64::MAX {
                s.tokens = 0.0;
            }
            let dt = now.saturating_since(s.refilled).as_secs_f64();
            let cap = (rate as f64 / 10.0).max((RUN_BLOCKS_MAX * BLOCK_SIZE) as f64);
            s.tokens = (s.tokens + rate as f64 * dt).min(cap);
        }
        s.refilled = now;
        while s.runs.len() < self.cfg.resync_inflight_max as usize && s.tokens > 0.0 {
            let start = if s.verify {
                if s.cursor >= blocks {
                    break;
                }
                s.cursor
            } else {
                match self.bitmap.next_set(s.cursor) {
                    Some(b) => b,
                    None if s.runs.is_empty() && self.bitmap.count() > 0 && s.cursor > 0 => {
                        s.cursor = 0;
                        continue;
                    }
                    None => break,
                }
            };
            if s.runs.range(..=start).next_back().is_some_and(|(&rs, r)| start < rs + r.count) {
                break;
            }
            let mut count = 1;
            if s.verify {
                count = RUN_BLOCKS_MAX.min(blocks - start);
            } else {
                while count < RUN_BLOCKS_MAX && self.bitmap.get(start + count) && !s.runs.contains_key(&(start + count))
                {
                    count += 1;
                }
            }
            let range = (start * BLOCK_SIZE, count * BLOCK_SIZE);
            if self.app_write_busy(range) {
                break;
            }
            let purpose = if s.verify { Purpose::VerifyRead { start } } else { Purpose::RsRead { start } };
            let io = self.io(purpose);
            out.push(Effect::LocalRead { io, offset: range.0, len: range.1 as u32 });
            s.runs.insert(start, Run { count, stage: Stage::Reading, data: Vec::new() });
            s.cursor = start + count;
            if s.tokens != f64::MAX {
                s.tokens -= range.1 as f64;
            }
        }
        let finished = s.runs.is_empty() && if s.verify { s.cursor >= blocks } else { self.bitmap.count() == 0 };
        if !finished {
            self.sweep = Some(s);
            return;
        }
        if s.verify {
            let mut rep = s.report;
            rep.running = false;
            tracing::info!(node = %self.cfg.node, out_of_sync = rep.out_of_sync_count, "online verify finished");
            self.send(now, Msg::VerifyDone { out_of_sync: rep.out_of_sync_count }, out);
            self.verify_report = Some(rep);
            self.repl = ReplState::Established;
            self.persist(out);
        } else {
            // Two steps: the target adopts the new generations first; this side moves its
            // bitmap generation to history only once the target confirmed (else a lost
            // ResyncDone would make the next handshake see unrelated or full-sync generations).
            let mut gi = self.gi;
            if gi.bitmap.0 != 0 {
                gi.push_history(gi.bitmap);
                gi.bitmap = Generation(0);
            }
            s.finishing = true;
            self.sweep = Some(s);
            self.send(now, Msg::ResyncDone { gi }, out);
        }
    }

    fn sweep_read_done(&mut self, now: Instant, start: u64, bytes: Vec<u8>, out: &mut Vec<Effect>) {
        let csums = self.cfg.csums;
        let Some(s) = self.sweep.as_mut() else {
            return;
        };
        let verify = s.verify;
        let Some(run) = s.runs.get_mut(&start) else {
            return;
        };
        if bytes.len() as u64 != run.count * BLOCK_SIZE {
            return;
        }
        let m = if verify || csums {
            let digests: Vec<Digest> = bytes.chunks(BLOCK_SIZE as usize).map(digest).collect();
            run.stage = Stage::AwaitReply;
            run.data = bytes;
            if verify { Msg::VerifyReq { start, digests } } else { Msg::RsCsum { start, digests } }
        } else {
            run.stage = Stage::Sent { remaining: run.count };
            self.stats.resync_bytes_sent += bytes.len() as u64;
            Msg::RsData { start, data: bytes }
        };
        self.send(now, m, out);
    }

    fn sweep_ack(
        &mut self,
        now: Instant,
        start: u64,
        count: u64,
        differing: Option<Vec<u32>>,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let Some(mut s) = self.sweep.take() else {
            return Err("resync/verify reply without a resync or verify".into());
        };
        let r = self.sweep_ack_inner(now, &mut s, start, count, differing, out);
        self.sweep = Some(s);
        r
    }

    fn sweep_ack_inner(
        &mut self,
        now: Instant,
        s: &mut Sweep,
        start: u64,
        count: u64,
        differing: Option<Vec<u32>>,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let Some((&rs, run)) = s.runs.range_mut(..=start).next_back() else {
            return Err(format!("reply for block {start} that was never sent"));
        };
        if start >= rs + run.count || count == 0 || start + count > rs + run.count {
            return Err(format!("reply for blocks {start}+{count} that were never sent"));
        }
        match differing {
            Some(diff) => {
                if run.stage != Stage::AwaitReply || rs != start || run.count != count {
                    return Err(format!("unexpected comparison reply for block {start}"));
                }
                if diff.iter().any(|&i| u64::from(i) >= count) {
                    return Err("comparison reply names blocks outside the run".into());
                }
                if s.verify {
                    s.report.checked_blocks += count;
                    for &i in &diff {
                        let b = start + u64::from(i);
                        self.bitmap.set(b);
                        s.report.out_of_sync_count += 1;
                        if s.report.out_of_sync_blocks.len() < VERIFY_LIST_MAX {
                            s.report.out_of_sync_blocks.push(b);
                        }
                    }
                    s.runs.remove(&rs);
                    return Ok(());
                }
                let data = std::mem::take(&mut run.data);
                for i in 0..count {
                    if !diff.contains(&(i as u32)) {
                        self.bitmap.clear(start + i);
                        self.stats.resync_blocks_equal += 1;
                    }
                }
                if diff.is_empty() {
                    s.runs.remove(&rs);
                    return Ok(());
                }
                run.stage = Stage::Sent { remaining: diff.len() as u64 };
                // Send differing blocks, contiguous ones together.
                let mut groups: Vec<(u64, u64)> = Vec::new();
                for &i in &diff {
                    let i = u64::from(i);
                    match groups.last_mut() {
                        Some((gs, gc)) if *gs + *gc == i => *gc += 1,
                        _ => groups.push((i, 1)),
                    }
                }
                for (gs, gc) in groups {
                    let lo = (gs * BLOCK_SIZE) as usize;
                    let hi = ((gs + gc) * BLOCK_SIZE) as usize;
                    let chunk = data.get(lo..hi).map(<[u8]>::to_vec).unwrap_or_default();
                    self.stats.resync_bytes_sent += chunk.len() as u64;
                    self.send(now, Msg::RsData { start: start + gs, data: chunk }, out);
                }
            }
            None => {
                let Stage::Sent { remaining } = run.stage else {
                    return Err(format!("resync ack for block {start} before it was sent"));
                };
                if count > remaining {
                    return Err(format!("resync ack for more blocks than sent at {start}"));
                }
                self.bitmap.clear_range(start, count);
                if remaining == count {
                    s.runs.remove(&rs);
                } else {
                    run.stage = Stage::Sent { remaining: remaining - count };
                }
            }
        }
        Ok(())
    }
}
