//! A compact deterministic harness: two engines, simulated disks that lose unsynced writes on a
//! crash, an ordered link that can break (losing what is in flight), simulated metadata
//! storage, and an oracle of application writes. Everything is driven by one seeded RNG and an
//! event queue keyed by (time, sequence).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use blockrepl::{
    BLOCK_SIZE, Config, ConnState, DiskState, Effect, Engine, Input, IoId, Meta, Msg, ReplState, ReqId, Role, Status,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wire::{Duration, Generation, Instant, NodeId};

/// What an application request returned.
pub(crate) type Outcome = Result<Option<Vec<u8>>, blockrepl::IoError>;

pub(crate) const BLOCKS: u64 = 2048; // 8 MiB: two activity-log extents

/// A disk: `current` is what reads see; `durable` survives a crash. Unsynced writes survive a
/// crash or not, independently.
#[derive(Clone, Default)]
pub(crate) struct SimDisk {
    pub(crate) current: BTreeMap<u64, Vec<u8>>,
    durable: BTreeMap<u64, Vec<u8>>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

impl SimDisk {
    fn write(&mut self, offset: u64, data: &[u8], fua: bool) {
        let mut pos = 0usize;
        while pos < data.len() {
            let at = offset + pos as u64;
            let b = at / BLOCK_SIZE;
            let within = (at % BLOCK_SIZE) as usize;
            let n = (BLOCK_SIZE as usize - within).min(data.len() - pos);
            let blk = self.current.entry(b).or_insert_with(|| vec![0; BLOCK_SIZE as usize]);
            blk[within..within + n].copy_from_slice(&data[pos..pos + n]);
            let copy = blk.clone();
            if fua {
                self.durable.insert(b, copy);
            } else {
                self.unsynced.push((b, copy));
            }
            pos += n;
        }
    }

    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut pos = 0usize;
        while pos < len {
            let at = offset + pos as u64;
            let b = at / BLOCK_SIZE;
            let within = (at % BLOCK_SIZE) as usize;
            let n = (BLOCK_SIZE as usize - within).min(len - pos);
            if let Some(blk) = self.current.get(&b) {
                out[pos..pos + n].copy_from_slice(&blk[within..within + n]);
            }
            pos += n;
        }
        out
    }

    fn flush(&mut self) {
        for (b, d) in self.unsynced.drain(..) {
            self.durable.insert(b, d);
        }
    }

    pub(crate) fn crash(&mut self, rng: &mut ChaCha8Rng) {
        for (b, d) in std::mem::take(&mut self.unsynced) {
            if rng.random_bool(0.5) {
                self.durable.insert(b, d);
            }
        }
        self.current = self.durable.clone();
    }

    pub(crate) fn block(&self, b: u64) -> Vec<u8> {
        self.read(b * BLOCK_SIZE, BLOCK_SIZE as usize)
    }

    /// Overwrites a block behind the engine's back (silent corruption).
    pub(crate) fn corrupt(&mut self, b: u64) {
        let mut d = self.block(b);
        d[17] ^= 0x5a;
        self.current.insert(b, d.clone());
        self.durable.insert(b, d);
    }
}

pub(crate) struct Node {
    pub(crate) engine: Option<Engine>,
    pub(crate) cfg: Config,
    pub(crate) disk: SimDisk,
    pub(crate) meta: Meta,
    pub(crate) incarnation: u64,
    pub(crate) fail_io: bool,
    seed: u64,
    last_meta_at: Instant,
}

#[derive(Debug)]
enum Ev {
    Deliver { to: usize, msg: Msg, conn: u64 },
    Io { node: usize, inc: u64, io: IoId, op: IoOp },
    Meta { node: usize, inc: u64, seq: u64, meta: Box<Meta> },
    Tick { node: usize, inc: u64 },
    Break { conn: u64 },
}

#[derive(Debug)]
enum IoOp {
    Write { offset: u64, data: blockrepl::msg::Payload, fua: bool },
    Zero { offset: u64, len: u64, fua: bool },
    Flush,
    Read { offset: u64, len: u32 },
}

/// One application write as the oracle knows it.
#[derive(Clone, Debug)]
pub(crate) struct WriteRec {
    pub(crate) block: u64,
    pub(crate) count: u64,
    pub(crate) tag: u64,
    pub(crate) done: bool,
}

pub(crate) fn block_content(tag: u64) -> Vec<u8> {
    let mut v = vec![0u8; BLOCK_SIZE as usize];
    for (i, c) in v.chunks_mut(8).enumerate() {
        c.copy_from_slice(&(tag ^ (i as u64)).to_le_bytes());
    }
    v
}

pub(crate) struct World {
    pub(crate) now: Instant,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) nodes: [Node; 2],
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: BTreeMap<usize, Ev>,
    seq: u64,
    pub(crate) conn: u64,
    pub(crate) link_up: bool,
    pub(crate) partitioned: bool,
    last_delivery: [Instant; 2],
    pub(crate) writes: Vec<WriteRec>,
    pub(crate) req_to_write: BTreeMap<ReqId, usize>,
    pub(crate) completed: Vec<(ReqId, Outcome)>,
    next_req: u64,
    pub(crate) link_bytes: u64,
    pub(crate) trace: bool,
}

impl World {
    pub(crate) fn new(seed: u64, cfg: impl Fn(Config) -> Config, initial: bool) -> World {
        let size = BLOCKS * BLOCK_SIZE;
        let mk = |me: u32, other: u32| {
            let c = cfg(Config::new(NodeId(me), NodeId(other), size));
            let meta = Meta::new(NodeId(me), NodeId(other), size, initial.then_some(Generation(0x1111)));
            Node {
                engine: None,
                cfg: c,
                disk: SimDisk::default(),
                meta,
                incarnation: 0,
                fail_io: false,
                last_meta_at: Instant::ZERO,
                seed: seed ^ (u64::from(me) * 0x9e37_79b9),
            }
        };
        let mut w = World {
            now: Instant::from_nanos(1_000_000),
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: [mk(1, 2), mk(2, 1)],
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            conn: 0,
            link_up: false,
            partitioned: false,
            last_delivery: [Instant::ZERO; 2],
            writes: Vec::new(),
            req_to_write: BTreeMap::new(),
            completed: Vec::new(),
            next_req: 1,
            link_bytes: 0,
            trace: std::env::var("BLOCKREPL_TRACE").is_ok(),
        };
        w.boot(0);
        w.boot(1);
        w
    }

    pub(crate) fn engine(&self, n: usize) -> &Engine {
        self.nodes[n].engine.as_ref().expect("node is up")
    }

    pub(crate) fn status(&self, n: usize) -> Status {
        self.engine(n).status()
    }

    pub(crate) fn alive(&self, n: usize) -> bool {
        self.nodes[n].engine.is_some()
    }

    pub(crate) fn boot(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.incarnation += 1;
        let mut e = Engine::new(node.cfg.clone(), node.meta.clone(), node.seed ^ node.incarnation);
        let mut out = Vec::new();
        e.start(self.now, &mut out);
        node.engine = Some(e);
        self.apply(n, out);
    }

    pub(crate) fn crash(&mut self, n: usize) {
        self.nodes[n].engine = None;
        if self.link_up {
            self.break_link();
        }
        let node = &mut self.nodes[n];
        node.disk.crash(&mut self.rng);
        // Outstanding requests of the crashed node never complete.
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        let id = self.seq as usize;
        self.events.insert(id, ev);
        self.queue.push(Reverse((at, self.seq, id)));
    }

    fn delay(&mut self, lo_us: u64, hi_us: u64) -> Duration {
        Duration::from_micros(self.rng.random_range(lo_us..=hi_us))
    }

    pub(crate) fn input(&mut self, n: usize, input: Input) {
        let Some(e) = self.nodes[n].engine.as_mut() else {
            return;
        };
        if self.trace {
            eprintln!("{:>10} n{} <- {:?}", self.now.as_nanos() / 1000, n + 1, short(&input));
        }
        let mut out = Vec::new();
        e.handle(self.now, input, &mut out);
        self.apply(n, out);
    }

    pub(crate) fn admin<T>(&mut self, n: usize, f: impl FnOnce(&mut Engine, Instant, &mut Vec<Effect>) -> T) -> T {
        let mut out = Vec::new();
        let e = self.nodes[n].engine.as_mut().expect("node is up");
        let r = f(e, self.now, &mut out);
        self.apply(n, out);
        r
    }

    fn apply(&mut self, n: usize, out: Vec<Effect>) {
        let inc = self.nodes[n].incarnation;
        for eff in out {
            match eff {
                Effect::LocalWrite { io, offset, data, fua } => {
                    let d = self.delay(5, 120);
                    self.push(
                        self.now.saturating_add(d),
                        Ev::Io { node: n, inc, io, op: IoOp::Write { offset, data, fua } },
                    );
                }
                Effect::LocalZero { io, offset, len, fua } => {
                    let d = self.delay(5, 120);
                    self.push(
                        self.now.saturating_add(d),
                        Ev::Io { node: n, inc, io, op: IoOp::Zero { offset, len, fua } },
                    );
                }
                Effect::LocalFlush { io } => {
                    let d = self.delay(20, 300);
                    self.push(self.now.saturating_add(d), Ev::Io { node: n, inc, io, op: IoOp::Flush });
                }
                Effect::LocalRead { io, offset, len } => {
                    let d = self.delay(5, 80);
                    self.push(self.now.saturating_add(d), Ev::Io { node: n, inc, io, op: IoOp::Read { offset, len } });
                }
                Effect::Send(msg) => {
                    if !self.link_up {
                        continue;
                    }
                    self.link_bytes += msg.encode().map(|b| b.len() as u64).unwrap_or(0);
                    // Exercise the codec on every message.
                    let msg = Msg::decode(&msg.encode().expect("encodes")).expect("decodes");
                    let to = 1 - n;
                    let d = self.delay(10, 80);
                    let at = self.now.saturating_add(d).max(self.last_delivery[to]);
                    self.last_delivery[to] = at;
                    let conn = self.conn;
                    self.push(at, Ev::Deliver { to, msg, conn });
                }
                Effect::DropLink => {
                    // A TCP close still delivers what was sent before it.
                    if self.link_up {
                        let at = self.last_delivery[0].max(self.last_delivery[1]).max(self.now);
                        let conn = self.conn;
                        self.push(at.saturating_add(Duration::from_micros(1)), Ev::Break { conn });
                    }
                }
                Effect::Complete { req, result } => {
                    if let Some(&w) = self.req_to_write.get(&req)
                        && result.is_ok()
                    {
                        self.writes[w].done = true;
                    }
                    self.completed.push((req, result));
                }
                Effect::PersistMeta { seq, meta } => {
                    // Metadata writes complete in order (one writer).
                    let d = self.delay(10, 200);
                    let at = self.now.saturating_add(d).max(self.nodes[n].last_meta_at);
                    self.nodes[n].last_meta_at = at;
                    self.push(at, Ev::Meta { node: n, inc, seq, meta });
                }
            }
        }
        if let Some(e) = self.nodes[n].engine.as_ref()
            && let Some(t) = e.next_wakeup()
        {
            self.push(t.max(self.now), Ev::Tick { node: n, inc });
        }
    }

    pub(crate) fn break_link(&mut self) {
        self.link_up = false;
        self.conn += 1;
        for n in 0..2 {
            self.input(n, Input::LinkDown);
        }
    }

    /// Brings the link up if both ends want it.
    pub(crate) fn try_connect(&mut self) {
        if self.link_up || self.partitioned {
            return;
        }
        if (0..2).all(|n| self.nodes[n].engine.as_ref().is_some_and(Engine::wants_link)) {
            self.link_up = true;
            self.conn += 1;
            self.last_delivery = [self.now; 2];
            self.input(0, Input::LinkUp);
            self.input(1, Input::LinkUp);
        }
    }

    /// Runs one event. Returns false when the queue is empty.
    pub(crate) fn step(&mut self) -> bool {
        let Some(Reverse((at, _, id))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let Some(ev) = self.events.remove(&id) else {
            return true;
        };
        match ev {
            Ev::Deliver { to, msg, conn } => {
                if conn == self.conn && self.link_up {
                    self.input(to, Input::Message(msg));
                }
            }
            Ev::Io { node, inc, io, op } => {
                if self.nodes[node].incarnation != inc || self.nodes[node].engine.is_none() {
                    return true;
                }
                let fail = self.nodes[node].fail_io;
                let disk = &mut self.nodes[node].disk;
                let result = if fail {
                    Err(())
                } else {
                    match op {
                        IoOp::Write { offset, data, fua } => {
                            disk.write(offset, &data, fua);
                            Ok(Vec::new())
                        }
                        IoOp::Zero { offset, len, fua } => {
                            disk.write(offset, &vec![0; len as usize], fua);
                            Ok(Vec::new())
                        }
                        IoOp::Flush => {
                            disk.flush();
                            Ok(Vec::new())
                        }
                        IoOp::Read { offset, len } => Ok(disk.read(offset, len as usize)),
                    }
                };
                self.input(node, Input::LocalDone { io, result });
            }
            Ev::Meta { node, inc, seq, meta } => {
                if self.nodes[node].incarnation != inc || self.nodes[node].engine.is_none() {
                    return true;
                }
                self.nodes[node].meta = *meta;
                self.input(node, Input::MetaPersisted { seq });
            }
            Ev::Break { conn } => {
                if conn == self.conn && self.link_up {
                    self.break_link();
                }
            }
            Ev::Tick { node, inc } => {
                if self.nodes[node].incarnation != inc {
                    return true;
                }
                if self.nodes[node].engine.as_ref().and_then(Engine::next_wakeup).is_some_and(|t| t <= self.now) {
                    self.input(node, Input::Tick);
                }
            }
        }
        true
    }

    /// Runs events until `until` (simulated), connecting when possible.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now.saturating_add(d);
        loop {
            self.try_connect();
            let next = self.queue.peek().map(|Reverse((t, _, _))| *t);
            match next {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    /// Runs until `cond` holds or `limit` passes; returns whether it held.
    pub(crate) fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&World) -> bool) -> bool {
        let end = self.now.saturating_add(limit);
        while self.now < end {
            if cond(self) {
                return true;
            }
            self.run_for(Duration::from_micros(200));
        }
        cond(self)
    }

    /// Panics naming the first differing blocks when the two copies differ.
    pub(crate) fn assert_same_data(&self) {
        let diff: Vec<u64> =
            (0..BLOCKS).filter(|&b| self.nodes[0].disk.block(b) != self.nodes[1].disk.block(b)).take(10).collect();
        assert!(diff.is_empty(), "copies differ at blocks {diff:?}");
    }

    pub(crate) fn established(&self) -> bool {
        (0..2).all(|n| {
            self.alive(n) && {
                let s = self.status(n);
                s.conn == ConnState::Connected && s.repl == ReplState::Established
            }
        })
    }

    pub(crate) fn in_sync(&self) -> bool {
        self.established()
            && (0..2).all(|n| {
                let s = self.status(n);
                s.disk == DiskState::UpToDate && s.out_of_sync_blocks == 0
            })
    }

    /// Issues an application write of `count` blocks at `block` on node `n`.
    pub(crate) fn write(&mut self, n: usize, block: u64, count: u64) -> ReqId {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        let tag = self.rng.random::<u64>() | 1;
        let mut data = Vec::with_capacity((count * BLOCK_SIZE) as usize);
        for i in 0..count {
            data.extend_from_slice(&block_content(tag.wrapping_add(i)));
        }
        self.writes.push(WriteRec { block, count, tag, done: false });
        self.req_to_write.insert(req, self.writes.len() - 1);
        self.input(n, Input::Write { req, offset: block * BLOCK_SIZE, data: data.into(), fua: false });
        req
    }

    pub(crate) fn flush(&mut self, n: usize) -> ReqId {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        self.input(n, Input::Flush { req });
        req
    }

    pub(crate) fn done(&self, req: ReqId) -> bool {
        self.completed.iter().any(|(r, res)| *r == req && res.is_ok())
    }

    pub(crate) fn role(&self, n: usize) -> Role {
        self.status(n).role
    }

    /// Checks that `disk` holds, for every block, the last completed write or a later one that
    /// was still in flight. Returns the first violation.
    pub(crate) fn check_contains_completed(&self, disk: &SimDisk) -> Result<(), String> {
        let mut per_block: BTreeMap<u64, Vec<(u64, bool)>> = BTreeMap::new();
        for w in &self.writes {
            for i in 0..w.count {
                per_block.entry(w.block + i).or_default().push((w.tag.wrapping_add(i), w.done));
            }
        }
        for (b, hist) in per_block {
            let last_done = hist.iter().rposition(|&(_, d)| d);
            let mut ok: Vec<Vec<u8>> = Vec::new();
            match last_done {
                Some(i) => ok.push(block_content(hist[i].0)),
                None => ok.push(vec![0; BLOCK_SIZE as usize]),
            }
            let from = last_done.map_or(0, |i| i + 1);
            for &(tag, _) in &hist[from..] {
                ok.push(block_content(tag));
            }
            let have = disk.block(b);
            if !ok.contains(&have) {
                return Err(format!(
                    "block {b}: holds {:016x}, completed history {:?}",
                    u64::from_le_bytes(have[..8].try_into().unwrap_or([0; 8])),
                    hist.iter().map(|(t, d)| format!("{t:016x}{}", if *d { "+" } else { "" })).collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    }
}

fn short(i: &Input) -> String {
    match i {
        Input::Write { req, offset, data, .. } => {
            format!("Write {req:?} @{} +{}", offset / BLOCK_SIZE, data.len() as u64 / BLOCK_SIZE)
        }
        Input::Message(Msg::Data { seq, offset, .. }) => {
            format!("Data {seq} @{}", offset / BLOCK_SIZE)
        }
        Input::Message(Msg::RsData { start, data }) => {
            format!("RsData @{start} +{}", data.len() as u64 / BLOCK_SIZE)
        }
        Input::Message(m) => format!("{m:?}").chars().take(120).collect(),
        Input::LocalDone { io, result } => format!("LocalDone {io:?} ok={}", result.is_ok()),
        other => format!("{other:?}").chars().take(120).collect(),
    }
}
