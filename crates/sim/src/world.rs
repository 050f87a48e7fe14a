//! The world: nodes, the event queue, the network and the checkers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wire::{Duration, Instant, LinkId, NodeId};

use crate::clock::ClockModel;
use crate::net::{Fate, NetConfig};
use crate::node::{Outbox, SimNode};
use crate::scenario::Failure;

/// Builds (or rebuilds after a crash) a node: its id, the durable state it kept (if any), and a
/// seed for its own randomness.
pub(crate) type Factory<N> = Box<dyn FnMut(NodeId, Option<&[u8]>, u64) -> N>;

/// An application input injected into a node at a given time.
pub(crate) type Poke<N> = Box<dyn FnOnce(&mut N, Instant, &mut Outbox<<N as SimNode>::Note>)>;

/// A check run after every step. Return `Err(what went wrong)` on a violation.
pub trait Checker<N: SimNode> {
    /// `notes` are the observations made during the step just executed.
    fn check(&mut self, world: &World<N>, notes: &[Note<N::Note>]) -> Result<(), String>;
}

impl<N: SimNode, F> Checker<N> for F
where
    F: FnMut(&World<N>, &[Note<N::Note>]) -> Result<(), String>,
{
    fn check(&mut self, world: &World<N>, notes: &[Note<N::Note>]) -> Result<(), String> {
        self(world, notes)
    }
}

/// One observation, stamped with simulated time and the node that made it.
#[derive(Clone, Debug)]
pub struct Note<T> {
    /// Simulated (global) time.
    pub at: Instant,
    /// Who reported it.
    pub node: NodeId,
    /// What was reported.
    pub note: T,
}

/// A line of the trace kept for failure reports.
#[derive(Clone, Debug)]
pub enum WorldEvent {
    /// A packet reached a node.
    Deliver {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// Link used.
        link: LinkId,
        /// Size.
        len: usize,
    },
    /// A packet was dropped.
    Drop {
        /// Sender.
        from: NodeId,
        /// Intended receiver.
        to: NodeId,
        /// Why.
        reason: &'static str,
    },
    /// A node's timer fired.
    Wakeup {
        /// The node.
        node: NodeId,
    },
    /// An injected input ran.
    Poke {
        /// The node.
        node: NodeId,
    },
    /// A fault or healing action.
    Fault(String),
    /// A node reported something (Debug-formatted).
    Note {
        /// The node.
        node: NodeId,
        /// The note.
        text: String,
    },
}

impl fmt::Display for WorldEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorldEvent::Deliver { from, to, link, len } => write!(f, "n{from} -> n{to} {link} {len}B"),
            WorldEvent::Drop { from, to, reason } => write!(f, "n{from} -> n{to} dropped ({reason})"),
            WorldEvent::Wakeup { node } => write!(f, "n{node} wakeup"),
            WorldEvent::Poke { node } => write!(f, "n{node} input"),
            WorldEvent::Fault(s) => write!(f, "FAULT {s}"),
            WorldEvent::Note { node, text } => write!(f, "n{node} {text}"),
        }
    }
}

enum Event<N: SimNode> {
    Deliver { from: NodeId, to: NodeId, link: LinkId, bytes: Vec<u8> },
    Wakeup { node: NodeId, generation: u64 },
    Resume { node: NodeId, pause_id: u64 },
    Poke { node: NodeId, poke: Poke<N> },
}

struct Queued<N: SimNode> {
    at: Instant,
    seq: u64,
    event: Event<N>,
}

impl<N: SimNode> PartialEq for Queued<N> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<N: SimNode> Eq for Queued<N> {}
impl<N: SimNode> PartialOrd for Queued<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<N: SimNode> Ord for Queued<N> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    Up,
    Paused { pause_id: u64 },
    Crashed,
}

struct Slot<N: SimNode> {
    run: Run,
    node: Option<N>,
    clock: ClockModel,
    disk: Option<Vec<u8>>,
    timer_generation: u64,
    /// Packets that arrived while paused, handed over on resume.
    inbox: VecDeque<(NodeId, LinkId, Vec<u8>)>,
    wakeup_missed: bool,
    restarts: u64,
    /// When the node last started running (boot or resume), or crashed.
    since: Instant,
}

const TRACE_LEN: usize = 48;

/// A simulated cluster of `N` nodes.
pub struct World<N: SimNode> {
    seed: u64,
    rng: ChaCha8Rng,
    now: Instant,
    seq: u64,
    step: u64,
    queue: BinaryHeap<Reverse<Queued<N>>>,
    slots: BTreeMap<NodeId, Slot<N>>,
    factory: Factory<N>,
    /// The network; tests and the fault plan change it between steps.
    pub net: NetConfig,
    trace: VecDeque<(u64, Instant, WorldEvent)>,
    checkers: Vec<Box<dyn Checker<N>>>,
    step_notes: Vec<Note<N::Note>>,
    next_pause_id: u64,
    events_processed: u64,
}

impl<N: SimNode> World<N> {
    /// A world with `nodes` nodes numbered 1..=nodes, built by `factory`, all started at time 0.
    pub fn new(seed: u64, nodes: u32, factory: impl FnMut(NodeId, Option<&[u8]>, u64) -> N + 'static) -> Self {
        let mut world = World {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Instant::ZERO,
            seq: 0,
            step: 0,
            queue: BinaryHeap::new(),
            slots: BTreeMap::new(),
            factory: Box::new(factory),
            net: NetConfig::default(),
            trace: VecDeque::with_capacity(TRACE_LEN),
            checkers: Vec::new(),
            step_notes: Vec::new(),
            next_pause_id: 0,
            events_processed: 0,
        };
        for i in 1..=nodes {
            world.add_node(NodeId(i));
        }
        world
    }

    /// Adds and starts a node with a fresh disk.
    pub fn add_node(&mut self, id: NodeId) {
        // Nodes boot at different local times, so no two clocks agree by accident.
        let start = Instant::from_nanos(self.rng.random_range(0..1_000_000_000u64));
        let slot = Slot {
            run: Run::Crashed,
            node: None,
            clock: ClockModel::new(self.now, start, 0),
            disk: None,
            timer_generation: 0,
            inbox: VecDeque::new(),
            wakeup_missed: false,
            restarts: 0,
            since: self.now,
        };
        self.slots.insert(id, slot);
        self.boot(id);
    }

    /// Registers a checker that runs after every step.
    pub fn add_checker(&mut self, checker: impl Checker<N> + 'static) {
        self.checkers.push(Box::new(checker));
    }

    /// The seed this world was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Simulated (global) time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Steps executed so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Events processed so far (packets, timers, inputs).
    pub fn events_processed(&self) -> u64 {
        self.events_processed
    }

    /// The world's RNG (for fault plans and workloads, so that they stay reproducible).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// All node ids, crashed or not.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.slots.keys().copied().collect()
    }

    /// Ids of nodes that are running (not crashed, not paused).
    pub fn running(&self) -> Vec<NodeId> {
        self.slots.iter().filter(|(_, s)| s.run == Run::Up).map(|(id, _)| *id).collect()
    }

    /// Ids of nodes that exist (running or paused).
    pub fn alive(&self) -> Vec<NodeId> {
        self.slots.iter().filter(|(_, s)| s.run != Run::Crashed).map(|(id, _)| *id).collect()
    }

    /// True when the node is up and not paused.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|s| s.run == Run::Up)
    }

    /// True when the node is paused.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|s| matches!(s.run, Run::Paused { .. }))
    }

    /// True when the node is crashed.
    pub fn is_crashed(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_none_or(|s| s.run == Run::Crashed)
    }

    /// The node's core, unless it is crashed.
    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.slots.get(&id).and_then(|s| s.node.as_ref())
    }

    /// The node's local clock reading now.
    pub fn local_now(&self, id: NodeId) -> Option<Instant> {
        self.slots.get(&id).map(|s| s.clock.local(self.now))
    }

    /// Since when the node has been running without a crash or pause, if it is running.
    pub fn running_since(&self, id: NodeId) -> Option<Instant> {
        self.slots.get(&id).filter(|s| s.run == Run::Up).map(|s| s.since)
    }

    /// Since when the node has been down, if it is crashed.
    pub fn crashed_since(&self, id: NodeId) -> Option<Instant> {
        self.slots.get(&id).filter(|s| s.run == Run::Crashed).map(|s| s.since)
    }

    /// How often the node was restarted.
    pub fn restarts(&self, id: NodeId) -> u64 {
        self.slots.get(&id).map_or(0, |s| s.restarts)
    }

    /// Records a line in the trace (faults, workload steps).
    pub fn log(&mut self, event: WorldEvent) {
        if self.trace.len() == TRACE_LEN {
            self.trace.pop_front();
        }
        self.trace.push_back((self.step, self.now, event));
    }

    /// The recent trace, oldest first, one formatted line per event.
    pub fn trace_lines(&self) -> Vec<String> {
        self.trace.iter().map(|(step, at, e)| format!("#{step:<7} {at:>10} {e}")).collect()
    }

    fn push(&mut self, at: Instant, event: Event<N>) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at, seq: self.seq, event }));
    }

    /// Injects an application input into `node` at time `at` (now if in the past).
    pub fn poke_at(
        &mut self,
        at: Instant,
        node: NodeId,
        poke: impl FnOnce(&mut N, Instant, &mut Outbox<N::Note>) + 'static,
    ) {
        let at = at.max(self.now);
        self.push(at, Event::Poke { node, poke: Box::new(poke) });
    }

    // ----- faults -------------------------------------------------------------------------

    /// Crashes a node: it stops at once; packets in flight to it are lost; its timers die. With
    /// `keep_disk` its persisted state survives for the restart, else the disk is wiped.
    pub fn crash(&mut self, id: NodeId, keep_disk: bool) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if slot.run == Run::Crashed {
            return;
        }
        slot.run = Run::Crashed;
        slot.since = self.now;
        slot.node = None;
        slot.inbox.clear();
        slot.timer_generation += 1;
        if !keep_disk {
            slot.disk = None;
        }
        self.log(WorldEvent::Fault(format!("crash n{id}{}", if keep_disk { "" } else { " (disk lost)" })));
    }

    /// Restarts a crashed node from its disk.
    pub fn restart(&mut self, id: NodeId) {
        if !self.is_crashed(id) {
            return;
        }
        self.log(WorldEvent::Fault(format!("restart n{id}")));
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.restarts += 1;
        }
        self.boot(id);
    }

    fn boot(&mut self, id: NodeId) {
        let node_seed = self.rng.random::<u64>();
        let Some(slot) = self.slots.get_mut(&id) else { return };
        let node = (self.factory)(id, slot.disk.as_deref(), node_seed);
        slot.node = Some(node);
        slot.run = Run::Up;
        slot.since = self.now;
        slot.timer_generation += 1;
        self.run_node(id, |n, now, out| n.on_start(now, out));
    }

    /// Pauses a node (SIGSTOP): time passes, it does not run; packets queue in its socket buffer.
    /// With `duration` it resumes by itself.
    pub fn pause(&mut self, id: NodeId, duration: Option<Duration>) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if slot.run != Run::Up {
            return;
        }
        self.next_pause_id += 1;
        let pause_id = self.next_pause_id;
        slot.run = Run::Paused { pause_id };
        self.log(WorldEvent::Fault(format!(
            "pause n{id}{}",
            duration.map(|d| format!(" for {d}")).unwrap_or_default()
        )));
        if let Some(d) = duration {
            let at = self.now + d;
            self.push(at, Event::Resume { node: id, pause_id });
        }
    }

    /// Resumes a paused node: it first sees the packets buffered while paused, then its timer.
    pub fn resume(&mut self, id: NodeId) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if !matches!(slot.run, Run::Paused { .. }) {
            return;
        }
        slot.run = Run::Up;
        slot.since = self.now;
        let inbox = std::mem::take(&mut slot.inbox);
        let missed = std::mem::take(&mut slot.wakeup_missed);
        self.log(WorldEvent::Fault(format!("resume n{id} ({} packets buffered)", inbox.len())));
        for (from, link, bytes) in inbox {
            self.run_node(id, |n, now, out| n.on_packet(now, from, link, &bytes, out));
        }
        if missed {
            self.run_node(id, |n, now, out| n.on_wakeup(now, out));
        } else {
            self.reschedule_timer(id);
        }
    }

    /// Moves a node's clock forward by `by` at once (a monotonic clock never goes back).
    pub fn jump_clock(&mut self, id: NodeId, by: Duration) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.clock.jump(now, by);
        self.log(WorldEvent::Fault(format!("clock of n{id} jumps {by}")));
        self.reschedule_timer(id);
    }

    /// Sets a node's clock drift in parts per million (positive: runs fast).
    pub fn set_drift(&mut self, id: NodeId, ppm: i32) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.clock.set_drift(now, ppm);
        self.reschedule_timer(id);
    }

    // ----- running ------------------------------------------------------------------------

    fn run_node(&mut self, id: NodeId, f: impl FnOnce(&mut N, Instant, &mut Outbox<N::Note>)) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        let Some(node) = slot.node.as_mut() else { return };
        let local = slot.clock.local(self.now);
        let mut out = Outbox::default();
        f(node, local, &mut out);
        if let Some(last) = out.persists.pop() {
            slot.disk = Some(last);
        }
        self.events_processed += 1;
        for (to, link, bytes) in out.sends {
            self.transmit(id, to, link, bytes);
        }
        for note in out.notes {
            self.log(WorldEvent::Note { node: id, text: format!("{note:?}") });
            self.step_notes.push(Note { at: self.now, node: id, note });
        }
        self.reschedule_timer(id);
    }

    fn reschedule_timer(&mut self, id: NodeId) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.timer_generation += 1;
        let generation = slot.timer_generation;
        let Some(node) = slot.node.as_ref() else { return };
        if let Some(deadline) = node.next_wakeup() {
            let at = slot.clock.global_for(deadline).max(now);
            self.push(at, Event::Wakeup { node: id, generation });
        }
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, link: LinkId, bytes: Vec<u8>) {
        if !self.slots.contains_key(&to) {
            self.log(WorldEvent::Drop { from, to, reason: "no such node" });
            return;
        }
        match self.net.fate(from, to, link, &mut self.rng) {
            Fate::Dropped(reason) => self.log(WorldEvent::Drop { from, to, reason }),
            Fate::Delivered(delays) => {
                let mut bytes = bytes;
                let mut delays = delays.into_iter().peekable();
                while let Some(d) = delays.next() {
                    let at = self.now + d;
                    let copy = if delays.peek().is_some() { bytes.clone() } else { std::mem::take(&mut bytes) };
                    self.push(at, Event::Deliver { from, to, link, bytes: copy });
                }
            }
        }
    }

    /// Time of the next queued event.
    pub fn next_event_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.at)
    }

    /// Executes the next event, then every checker. Returns false when nothing is queued.
    pub fn step(&mut self) -> Result<bool, Failure> {
        let Some(Reverse(q)) = self.queue.pop() else { return Ok(false) };
        self.now = self.now.max(q.at);
        self.step += 1;
        match q.event {
            Event::Deliver { from, to, link, bytes } => self.deliver(from, to, link, bytes),
            Event::Wakeup { node, generation } => {
                let Some(slot) = self.slots.get_mut(&node) else { return Ok(true) };
                if slot.timer_generation != generation {
                    return Ok(true);
                }
                match slot.run {
                    Run::Up => {
                        self.log(WorldEvent::Wakeup { node });
                        self.run_node(node, |n, now, out| n.on_wakeup(now, out));
                    }
                    Run::Paused { .. } => slot.wakeup_missed = true,
                    Run::Crashed => {}
                }
            }
            Event::Resume { node, pause_id } => {
                if self.slots.get(&node).is_some_and(|s| s.run == Run::Paused { pause_id }) {
                    self.resume(node);
                }
            }
            Event::Poke { node, poke } => {
                if self.is_running(node) {
                    self.log(WorldEvent::Poke { node });
                    self.run_node(node, poke);
                }
            }
        }
        self.run_checkers()?;
        Ok(true)
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, link: LinkId, bytes: Vec<u8>) {
        let buffer = self.net.paused_buffer_packets;
        let Some(slot) = self.slots.get_mut(&to) else { return };
        match slot.run {
            Run::Crashed => self.log(WorldEvent::Drop { from, to, reason: "receiver down" }),
            Run::Paused { .. } => {
                if slot.inbox.len() < buffer {
                    slot.inbox.push_back((from, link, bytes));
                } else {
                    self.log(WorldEvent::Drop { from, to, reason: "receiver paused, buffer full" });
                }
            }
            Run::Up => {
                self.log(WorldEvent::Deliver { from, to, link, len: bytes.len() });
                self.run_node(to, |n, now, out| n.on_packet(now, from, link, &bytes, out));
            }
        }
    }

    /// Runs every checker on the notes gathered since the last check.
    pub fn run_checkers(&mut self) -> Result<(), Failure> {
        let notes = std::mem::take(&mut self.step_notes);
        let mut checkers = std::mem::take(&mut self.checkers);
        let mut result = Ok(());
        for c in checkers.iter_mut() {
            if let Err(what) = c.check(self, &notes) {
                result = Err(Failure::new(self, what));
                break;
            }
        }
        self.checkers = checkers;
        result
    }

    /// Runs events until simulated time `until` (events at exactly `until` included); the clock
    /// then reads `until`.
    pub fn run_until(&mut self, until: Instant) -> Result<(), Failure> {
        while let Some(at) = self.next_event_at() {
            if at > until {
                break;
            }
            self.step()?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), Failure> {
        let until = self.now + d;
        self.run_until(until)
    }
}
