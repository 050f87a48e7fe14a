//! The fencer on the DC: carries out the controller's fence orders with the fence devices
//! configured in the CIB (`class="stonith"` primitives), through the sans-IO
//! [`fencing::fencer::Fencer`] (levels, host checks, delays, deadlines). Each device action
//! runs on its own thread; the result comes back to the daemon's loop.
//!
//! Device types: `fence_ipmilan` (and `ipmi`) run the native IPMI lanplus agent, which takes
//! fence_ipmilan's parameters; `libvirt` and `ec2` the native ones; any other `fence_*` type
//! runs the fence-agents script of that name. Devices are read from the CIB again whenever no
//! request is in progress, so configuration changes apply to the next fence.

use std::collections::BTreeMap;
use std::sync::Arc;

use crm::cib::{Cib, Resource, ResourceKind};
use crm::dc::FenceOrder;
use fencing::fencer::{DeviceConfig, Effect, FenceRequest, FenceResult, Fencer, Input, OpId, StepResult};
use fencing::{Action, FenceAgent, Params};
use tokio::sync::mpsc;
use wire::Instant;

/// A device action's result, back from its thread.
pub(crate) type StepDone = (OpId, u32, StepResult);

/// The DC's fencer and its devices.
pub(crate) struct FenceService {
    me: String,
    seed: u64,
    fencer: Option<Fencer>,
    devices: BTreeMap<String, (Params, Arc<dyn FenceAgent>)>,
    orders: Vec<FenceOrder>,
    done: mpsc::UnboundedSender<StepDone>,
}

impl FenceService {
    /// The fencer of node `me`; device results arrive on the returned receiver and go to
    /// [`FenceService::step`].
    pub(crate) fn new(me: &str, seed: u64) -> (FenceService, mpsc::UnboundedReceiver<StepDone>) {
        let (done, rx) = mpsc::unbounded_channel();
        (
            FenceService { me: me.to_string(), seed, fencer: None, devices: BTreeMap::new(), orders: Vec::new(), done },
            rx,
        )
    }

    /// When to call [`FenceService::wakeup`].
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.fencer.as_ref().and_then(Fencer::next_wakeup)
    }

    /// A fence order from the controller; returns the orders that ended at once.
    pub(crate) fn fence(
        &mut self,
        now: Instant,
        doc: &Cib,
        order: FenceOrder,
    ) -> Vec<(FenceOrder, Result<(), String>)> {
        if self.fencer.as_ref().is_none_or(|f| f.in_progress() == 0) {
            self.load(doc);
        }
        if self.devices.is_empty() {
            let why = format!(
                "no fence device is configured that could fence {}; configure one (crmctl stonith create)",
                order.target
            );
            return vec![(order, Err(why))];
        }
        if self.orders.iter().any(|o| o.target == order.target) {
            // The fencer is already at it: its result answers both.
            self.orders.push(order);
            return Vec::new();
        }
        tracing::warn!(node = %self.me, target = %order.target, action = %order.power, "fencing");
        let request = FenceRequest {
            target: order.target.clone(),
            action: if order.power == "off" { Action::Off } else { Action::Reboot },
            requester: "controller".into(),
            origin: self.me.clone(),
            allow_self: false,
            extra_delay: wire::Duration::ZERO,
            timeout: order.timeout,
        };
        self.orders.push(order);
        self.input(now, Input::Request(request))
    }

    /// A device action finished.
    pub(crate) fn step(&mut self, now: Instant, (op, step, result): StepDone) -> Vec<(FenceOrder, Result<(), String>)> {
        self.input(now, Input::Step { op, step, result })
    }

    /// Time passed.
    pub(crate) fn wakeup(&mut self, now: Instant) -> Vec<(FenceOrder, Result<(), String>)> {
        if self.next_wakeup().is_some_and(|t| now >= t) { self.input(now, Input::Wakeup) } else { Vec::new() }
    }

    fn input(&mut self, now: Instant, input: Input) -> Vec<(FenceOrder, Result<(), String>)> {
        let Some(fencer) = self.fencer.as_mut() else { return Vec::new() };
        let mut fx = Vec::new();
        fencer.handle(now, input, &mut fx);
        let mut ended = Vec::new();
        for e in fx {
            match e {
                Effect::Run { op, step, device, action, plug } => {
                    let Some((params, agent)) = self.devices.get(&device) else {
                        let _ = self.done.send((op, step, StepResult::Failed(format!("device {device} is gone"))));
                        continue;
                    };
                    let done = self.done.clone();
                    match fencing::request_for(params, action, plug.as_deref()) {
                        Ok(req) => {
                            let agent = agent.clone();
                            tokio::spawn(async move {
                                let report = fencing::spawn(agent, req).await;
                                let _ = done.send((op, step, fencing::fencer::step_result(&report)));
                            });
                        }
                        Err(e) => {
                            let _ = done.send((op, step, StepResult::Failed(e.to_string())));
                        }
                    }
                }
                Effect::Finished(f) => {
                    let result = match f.result {
                        FenceResult::Done => {
                            tracing::warn!(node = %self.me, target = %f.request.target, devices = ?f.devices, "fenced");
                            Ok(())
                        }
                        other => {
                            let why = format!("{other:?}: {}", f.errors.join("; "));
                            tracing::error!(node = %self.me, target = %f.request.target, reason = %why, "fencing failed");
                            Err(why)
                        }
                    };
                    let (mine, rest): (Vec<FenceOrder>, Vec<FenceOrder>) =
                        std::mem::take(&mut self.orders).into_iter().partition(|o| o.target == f.request.target);
                    self.orders = rest;
                    ended.extend(mine.into_iter().map(|o| (o, result.clone())));
                }
            }
        }
        ended
    }

    /// Reads the fence devices from the CIB.
    fn load(&mut self, doc: &Cib) {
        self.devices.clear();
        let mut configs = Vec::new();
        for r in stonith_primitives(&doc.config.resources) {
            let ResourceKind::Primitive { agent, .. } = &r.kind else { continue };
            match device(r, agent) {
                Ok((config, params, built)) => {
                    configs.push(config);
                    self.devices.insert(r.id.clone(), (params, built));
                }
                Err(e) => tracing::error!(node = %self.me, device = %r.id, error = %e, "fence device unusable"),
            }
        }
        self.fencer = Some(Fencer::new(&self.me, configs, Vec::new(), self.seed));
    }
}

/// A device from its primitive: the fencer's view, the agent's parameters, the agent.
pub(crate) fn device(r: &Resource, kind: &str) -> Result<(DeviceConfig, Params, Arc<dyn FenceAgent>), String> {
    let mut params = Params::default();
    for set in r.params.iter().filter(|s| s.rule.is_none()) {
        for p in &set.pairs {
            if let Some(v) = &p.value
                && params.get(&[p.name.as_str()]).is_none()
            {
                params.set(&p.name, v).map_err(|e| e.to_string())?;
            }
        }
    }
    let native = match kind {
        "fence_ipmilan" | "ipmi" => Some("ipmi"),
        "libvirt" | "ec2" => Some(kind),
        _ => None,
    };
    let mut built = None;
    if let Some(n) = native {
        let mut p = params.clone();
        p.set("agent", n).map_err(|e| e.to_string())?;
        if let Ok(a) = fencing::build_agent(&p) {
            built = Some((p, a));
        }
    }
    let (params, agent) = match built {
        Some(b) => b,
        None => {
            let mut p = params.clone();
            p.set("agent", kind).map_err(|e| e.to_string())?;
            let a = fencing::build_agent(&p).map_err(|e| e.to_string())?;
            (p, a)
        }
    };
    let config = DeviceConfig::new(&r.id, params.clone(), false).map_err(|e| e.to_string())?;
    Ok((config, params, Arc::from(agent)))
}

/// Every `class="stonith"` primitive, wherever it is configured.
pub(crate) fn stonith_primitives(rs: &[Resource]) -> Vec<&Resource> {
    let mut out = Vec::new();
    for r in rs {
        match &r.kind {
            ResourceKind::Primitive { class, .. } if class == "stonith" => out.push(r),
            ResourceKind::Primitive { .. } => {}
            ResourceKind::Group { members } => out.extend(stonith_primitives(members)),
            ResourceKind::Clone { child, .. } => out.extend(stonith_primitives(std::slice::from_ref(child.as_ref()))),
        }
    }
    out
}
