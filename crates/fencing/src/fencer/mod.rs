//! The fencer's decision logic, sans IO: which devices to use for a node, in which order,
//! after which delay, and when a request has succeeded or failed.
//!
//! [`Fencer::handle`] takes `now` and an [`Input`] and appends [`Effect`]s: run an agent
//! action, or report a finished request. The driver executes `Effect::Run` with
//! [`crate::spawn`] and feeds the result back as `Input::Step`; it calls `handle` with
//! `Input::Wakeup` at [`Fencer::next_wakeup`]. No clock, thread, socket or global RNG here:
//! the random delay comes from a seed given at construction.
//!
//! Rules:
//! - Topology: levels 1..9 per target are tried in order; every device of a level must
//!   confirm, else the next level is tried. Without a topology for the target, each device
//!   that can fence it (by its `pcmk_host_check`) is a level of its own, in
//!   (`priority`, id) order.
//! - A `reboot` through a level with several devices or plugs (dual power supplies) is done
//!   as off on all of them, then on on all: the target is fenced once every off is confirmed.
//! - The delay (`pcmk_delay_base`/`pcmk_delay_max` of the first device used, plus the
//!   request's extra delay, e.g. `priority-fencing-delay`) is waited once per request.
//! - A node never fences itself unless the request says `allow_self`.
//! - A request not finished by its deadline fails as timed out; late results are ignored.

mod device;

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wire::{Duration, Instant};

pub use device::{DeviceConfig, HostCheck, parse_host_map, priority_fencing_delay};

use crate::agent::{Action, PowerState};

/// Identifies one fencing request inside a [`Fencer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// A request to fence a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceRequest {
    /// The node to fence.
    pub target: String,
    /// `Off`, `Reboot` or `On` (unfencing).
    pub action: Action,
    /// Who asked (a client name, e.g. `controller` or `crmctl`).
    pub requester: String,
    /// The node the request came from.
    pub origin: String,
    /// Allow fencing the local node (otherwise refused).
    pub allow_self: bool,
    /// Added to the device delay (e.g. `priority-fencing-delay`).
    pub extra_delay: Duration,
    /// Time for the whole request (`fencing-timeout`).
    pub timeout: Duration,
}

/// Which nodes a topology level applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LevelTarget {
    /// One node.
    Node(String),
    /// Node names matching a glob with `*`.
    Pattern(String),
}

/// One `fencing-level`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    /// 1..=9; lower first.
    pub index: u8,
    /// The nodes it applies to.
    pub target: LevelTarget,
    /// Devices that must all confirm.
    pub devices: Vec<String>,
}

/// The result of one agent action, as the driver reports it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepResult {
    /// The device confirmed the power action.
    Confirmed,
    /// `status` answered.
    Status(PowerState),
    /// `list` answered with these plug ids and aliases.
    List(Vec<String>),
    /// Certainly not done.
    Failed(String),
    /// Maybe not done.
    Unknown(String),
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FenceResult {
    /// Every device of a level confirmed.
    Done,
    /// Every level failed (or no device can fence the target).
    Failed,
    /// Refused before any device was used (self-fencing, bad request).
    Refused,
    /// The request's deadline passed.
    TimedOut,
}

/// A finished request.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The request's id.
    pub op: OpId,
    /// The request.
    pub request: FenceRequest,
    /// How it ended.
    pub result: FenceResult,
    /// The devices of the level that succeeded (empty otherwise).
    pub devices: Vec<String>,
    /// The topology level that succeeded, when a topology was used.
    pub level: Option<u8>,
    /// The delay waited.
    pub delay: Duration,
    /// When the request arrived and when it ended.
    pub started: Instant,
    /// When it ended.
    pub finished: Instant,
    /// Why levels failed, in order.
    pub errors: Vec<String>,
}

/// What the fencer asks the driver to do.
#[derive(Clone, Debug)]
#[must_use]
pub enum Effect {
    /// Run `action` on `device` for `plug`; report back with `Input::Step { op, step }`.
    Run {
        /// The request.
        op: OpId,
        /// Echo this back.
        step: u32,
        /// The device id.
        device: String,
        /// The action.
        action: Action,
        /// The plug.
        plug: Option<String>,
    },
    /// A request ended (record it in the history, answer the requester).
    Finished(Box<Finished>),
}

/// What the driver tells the fencer.
#[derive(Clone, Debug)]
pub enum Input {
    /// A new request.
    Request(FenceRequest),
    /// The result of an `Effect::Run`.
    Step {
        /// From the effect.
        op: OpId,
        /// From the effect.
        step: u32,
        /// What happened.
        result: StepResult,
    },
    /// Time passed (call at `next_wakeup`).
    Wakeup,
}

#[derive(Clone, Debug)]
struct PlanLevel {
    index: Option<u8>,
    devices: Vec<String>,
}

#[derive(Clone, Debug)]
struct Step {
    device: String,
    action: Action,
    plug: Option<String>,
    /// The "on" half of a split reboot: its failure does not undo the fence.
    best_effort: bool,
}

#[derive(Clone, Debug)]
enum Phase {
    Checking,
    Delaying { until: Instant },
    Acting { steps: Vec<Step>, pos: usize },
}

#[derive(Clone, Debug)]
struct Op {
    req: FenceRequest,
    started: Instant,
    deadline: Instant,
    levels: Vec<PlanLevel>,
    level: usize,
    phase: Phase,
    awaiting: Option<u32>,
    delay: Option<Duration>,
    errors: Vec<String>,
}

/// The fencer core.
#[derive(Debug)]
pub struct Fencer {
    local_node: String,
    devices: BTreeMap<String, DeviceConfig>,
    topology: Vec<Level>,
    rng: ChaCha8Rng,
    ops: BTreeMap<OpId, Op>,
    next_op: u64,
    next_step: u32,
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len()
                && name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| {
                    name.is_char_boundary(head.len() + i) && glob(tail, &name[head.len() + i..])
                })
        }
    }
}

impl Fencer {
    /// A fencer on `local_node` with its devices and topology; `seed` drives the random
    /// delays.
    pub fn new(
        local_node: &str,
        devices: Vec<DeviceConfig>,
        topology: Vec<Level>,
        seed: u64,
    ) -> Fencer {
        Fencer {
            local_node: local_node.to_owned(),
            devices: devices.into_iter().map(|d| (d.id.clone(), d)).collect(),
            topology,
            rng: ChaCha8Rng::seed_from_u64(seed),
            ops: BTreeMap::new(),
            next_op: 1,
            next_step: 1,
        }
    }

    /// Checks the topology against the devices: every problem at once.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for l in &self.topology {
            if !(1..=9).contains(&l.index) {
                problems.push(format!("fencing level index {} is outside 1..9", l.index));
            }
            if l.devices.is_empty() {
                problems.push(format!("fencing level {} has no devices", l.index));
            }
            for d in &l.devices {
                if !self.devices.contains_key(d) {
                    problems.push(format!(
                        "fencing level {} names unknown device `{d}`",
                        l.index
                    ));
                }
            }
        }
        problems
    }

    /// When to call `handle(Input::Wakeup)` next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.ops
            .values()
            .map(|op| match op.phase {
                Phase::Delaying { until } => until.min(op.deadline),
                _ => op.deadline,
            })
            .min()
    }

    /// Requests in progress.
    pub fn in_progress(&self) -> usize {
        self.ops.len()
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Vec<Effect>) {
        match input {
            Input::Request(req) => self.request(now, req, out),
            Input::Step { op, step, result } => self.step(now, op, step, result, out),
            Input::Wakeup => {}
        }
        self.tick(now, out);
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let ids: Vec<OpId> = self.ops.keys().copied().collect();
        for id in ids {
            let Some(op) = self.ops.get(&id) else {
                continue;
            };
            if now >= op.deadline {
                let mut op = self.ops.remove(&id).unwrap_or_else(|| unreachable!());
                op.errors
                    .push(format!("fencing timeout of {} exceeded", op.req.timeout));
                out.push(finished(
                    id,
                    op,
                    FenceResult::TimedOut,
                    now,
                    Vec::new(),
                    None,
                ));
                continue;
            }
            if let Phase::Delaying { until } = op.phase
                && now >= until
            {
                self.act(now, id, out);
            }
        }
    }

    fn request(&mut self, now: Instant, req: FenceRequest, out: &mut Vec<Effect>) {
        let id = OpId(self.next_op);
        self.next_op += 1;
        let mut op = Op {
            deadline: now + req.timeout,
            req,
            started: now,
            levels: Vec::new(),
            level: 0,
            phase: Phase::Checking,
            awaiting: None,
            delay: None,
            errors: Vec::new(),
        };
        let refuse = if !matches!(op.req.action, Action::Off | Action::Reboot | Action::On) {
            Some(format!(
                "`{}` is not a fencing action (off, reboot, on)",
                op.req.action
            ))
        } else if op.req.target == self.local_node && !op.req.allow_self {
            Some(if op.req.origin == self.local_node {
                format!(
                    "refusing to fence the local node {} at its own request (allow_self not set)",
                    self.local_node
                )
            } else {
                format!(
                    "refusing to fence the local node {} from itself: ask a peer to do it (allow_self not set)",
                    self.local_node
                )
            })
        } else {
            None
        };
        if let Some(reason) = refuse {
            op.errors.push(reason);
            out.push(finished(
                id,
                op,
                FenceResult::Refused,
                now,
                Vec::new(),
                None,
            ));
            return;
        }
        op.levels = self.plan(&op.req.target);
        if op.levels.is_empty() {
            op.errors.push(format!(
                "no fence device can fence {}: add it to a device's pcmk_host_list or pcmk_host_map, or a fencing level",
                op.req.target
            ));
            out.push(finished(id, op, FenceResult::Failed, now, Vec::new(), None));
            return;
        }
        self.ops.insert(id, op);
        self.start_level(now, id, out);
    }

    fn plan(&self, target: &str) -> Vec<PlanLevel> {
        let mut levels: Vec<&Level> = self
            .topology
            .iter()
            .filter(|l| match &l.target {
                LevelTarget::Node(n) => n == target,
                LevelTarget::Pattern(p) => glob(p, target),
            })
            .collect();
        if !levels.is_empty() {
            levels.sort_by_key(|l| l.index);
            return levels
                .into_iter()
                .map(|l| PlanLevel {
                    index: Some(l.index),
                    devices: l.devices.clone(),
                })
                .collect();
        }
        let mut devs: Vec<&DeviceConfig> = self
            .devices
            .values()
            .filter(|d| d.check != HostCheck::StaticList || d.statically_lists(target))
            .collect();
        devs.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        devs.into_iter()
            .map(|d| PlanLevel {
                index: None,
                devices: vec![d.id.clone()],
            })
            .collect()
    }

    fn new_step(&mut self) -> u32 {
        let s = self.next_step;
        self.next_step = self.next_step.wrapping_add(1);
        s
    }

    fn start_level(&mut self, now: Instant, id: OpId, out: &mut Vec<Effect>) {
        let Some(op) = self.ops.get(&id) else { return };
        let Some(level) = op.levels.get(op.level).cloned() else {
            let op = self.ops.remove(&id).unwrap_or_else(|| unreachable!());
            out.push(finished(id, op, FenceResult::Failed, now, Vec::new(), None));
            return;
        };
        let target = op.req.target.clone();
        // Explicit topology levels are used as configured; implicit ones are checked.
        if level.index.is_none() {
            let Some(dev) = self.devices.get(&level.devices[0]) else {
                return self.fail_level(
                    now,
                    id,
                    format!("device {} is not configured", level.devices[0]),
                    out,
                );
            };
            let query = match dev.check {
                HostCheck::StaticList | HostCheck::None => None,
                HostCheck::DynamicList => Some((Action::List, None)),
                HostCheck::Status => {
                    Some((Action::Status, dev.plugs_for(&target).into_iter().next()))
                }
            };
            let device = dev.id.clone();
            if let Some((action, plug)) = query {
                let step = self.new_step();
                if let Some(op) = self.ops.get_mut(&id) {
                    op.phase = Phase::Checking;
                    op.awaiting = Some(step);
                }
                out.push(Effect::Run {
                    op: id,
                    step,
                    device,
                    action,
                    plug,
                });
                return;
            }
        }
        self.delay_then_act(now, id, out);
    }

    fn delay_then_act(&mut self, now: Instant, id: OpId, out: &mut Vec<Effect>) {
        let Some(op) = self.ops.get(&id) else { return };
        if op.delay.is_some() {
            return self.act(now, id, out);
        }
        let first = op.levels[op.level]
            .devices
            .first()
            .cloned()
            .unwrap_or_default();
        let target = op.req.target.clone();
        let extra = op.req.extra_delay;
        let device_delay = match self.devices.get(&first) {
            Some(d) => d.delay_for(&target, &mut self.rng),
            None => Duration::ZERO,
        };
        let delay = device_delay + extra;
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.delay = Some(delay);
        if delay > Duration::ZERO {
            op.phase = Phase::Delaying { until: now + delay };
        } else {
            self.act(now, id, out);
        }
    }

    fn act(&mut self, now: Instant, id: OpId, out: &mut Vec<Effect>) {
        let Some(op) = self.ops.get(&id) else { return };
        let level = op.levels[op.level].clone();
        let target = op.req.target.clone();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for d in &level.devices {
            let Some(dev) = self.devices.get(d) else {
                return self.fail_level(now, id, format!("device {d} is not configured"), out);
            };
            for p in dev.plugs_for(&target) {
                pairs.push((d.clone(), p));
            }
        }
        let step = |(d, p): &(String, String), action, best_effort| Step {
            device: d.clone(),
            action,
            plug: Some(p.clone()),
            best_effort,
        };
        let steps: Vec<Step> = match op.req.action {
            Action::Reboot if pairs.len() > 1 => pairs
                .iter()
                .map(|x| step(x, Action::Off, false))
                .chain(pairs.iter().map(|x| step(x, Action::On, true)))
                .collect(),
            action => pairs.iter().map(|x| step(x, action, false)).collect(),
        };
        if let Some(op) = self.ops.get_mut(&id) {
            op.phase = Phase::Acting { steps, pos: 0 };
        }
        self.run_current(now, id, out);
    }

    fn run_current(&mut self, now: Instant, id: OpId, out: &mut Vec<Effect>) {
        let step_id = self.new_step();
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let Phase::Acting { steps, pos } = &op.phase else {
            return;
        };
        match steps.get(*pos) {
            Some(s) => {
                op.awaiting = Some(step_id);
                out.push(Effect::Run {
                    op: id,
                    step: step_id,
                    device: s.device.clone(),
                    action: s.action,
                    plug: s.plug.clone(),
                });
            }
            None => {
                let level = &op.levels[op.level];
                let (devices, index) = (level.devices.clone(), level.index);
                let op = self.ops.remove(&id).unwrap_or_else(|| unreachable!());
                out.push(finished(id, op, FenceResult::Done, now, devices, index));
            }
        }
    }

    fn fail_level(&mut self, now: Instant, id: OpId, why: String, out: &mut Vec<Effect>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let label = match op.levels[op.level].index {
            Some(i) => format!("level {i}"),
            None => format!("device {}", op.levels[op.level].devices.join(",")),
        };
        op.errors.push(format!("{label}: {why}"));
        op.level += 1;
        op.awaiting = None;
        op.phase = Phase::Checking;
        self.start_level(now, id, out);
    }

    fn step(
        &mut self,
        now: Instant,
        id: OpId,
        step: u32,
        result: StepResult,
        out: &mut Vec<Effect>,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if op.awaiting != Some(step) {
            return;
        }
        op.awaiting = None;
        match &mut op.phase {
            Phase::Checking => {
                let device = op.levels[op.level].devices[0].clone();
                let target = op.req.target.clone();
                let Some(dev) = self.devices.get(&device) else {
                    return;
                };
                let plugs = dev.plugs_for(&target);
                let capable = match &result {
                    StepResult::List(listed) => plugs.iter().all(|p| listed.contains(p)),
                    StepResult::Status(_) => true,
                    _ => false,
                };
                if capable {
                    self.delay_then_act(now, id, out);
                } else {
                    let why = match result {
                        StepResult::List(_) => {
                            format!("{} is not in the device's list", plugs.join(","))
                        }
                        StepResult::Failed(e) | StepResult::Unknown(e) => {
                            format!("cannot check target: {e}")
                        }
                        other => format!("unexpected check result {other:?}"),
                    };
                    self.fail_level(now, id, why, out);
                }
            }
            Phase::Delaying { .. } => {}
            Phase::Acting { steps, pos } => {
                let s = &steps[*pos];
                match result {
                    StepResult::Confirmed => {
                        *pos += 1;
                        self.run_current(now, id, out);
                    }
                    other if s.best_effort => {
                        op.errors.push(format!(
                            "{} on {}: power on after off failed: {other:?}",
                            s.device,
                            s.plug.as_deref().unwrap_or("-")
                        ));
                        *pos += 1;
                        self.run_current(now, id, out);
                    }
                    other => {
                        let why = format!(
                            "{} {} of {}: {}",
                            s.device,
                            s.action,
                            s.plug.as_deref().unwrap_or("-"),
                            match other {
                                StepResult::Failed(e) => format!("failed: {e}"),
                                StepResult::Unknown(e) => format!("unknown: {e}"),
                                o => format!("unexpected result {o:?}"),
                            }
                        );
                        self.fail_level(now, id, why, out);
                    }
                }
            }
        }
    }
}

fn finished(
    id: OpId,
    op: Op,
    result: FenceResult,
    now: Instant,
    devices: Vec<String>,
    level: Option<u8>,
) -> Effect {
    Effect::Finished(Box::new(Finished {
        op: id,
        request: op.req,
        result,
        devices,
        level,
        delay: op.delay.unwrap_or(Duration::ZERO),
        started: op.started,
        finished: now,
        errors: op.errors,
    }))
}

/// Turns an agent report into the fencer's step result: `Confirmed` only for a confirmed
/// power action.
pub fn step_result(report: &crate::Report) -> StepResult {
    use crate::agent::{Done, Outcome};
    match &report.outcome {
        Outcome::Done(Done::Off | Done::On | Done::Rebooted { .. }) => StepResult::Confirmed,
        Outcome::Done(Done::Status(p)) => StepResult::Status(*p),
        Outcome::Done(Done::List(plugs)) => StepResult::List(
            plugs
                .iter()
                .flat_map(|p| std::iter::once(p.id.clone()).chain(p.alias.clone()))
                .collect(),
        ),
        Outcome::Done(other) => StepResult::Unknown(format!("unexpected answer {other:?}")),
        Outcome::Failed(e) => StepResult::Failed(e.to_string()),
        Outcome::Unknown(e) => StepResult::Unknown(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
