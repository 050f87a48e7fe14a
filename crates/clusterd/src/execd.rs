//! This node's executor: runs the operations [`crm::node::NodeController`] asks for (the DC's
//! orders, delivered in the agreed order on mux tag 4) with the resource agents, each on a
//! blocking thread bounded by its timeout, and repeats recurring monitors until cancelled.
//! What to run, cancel, record and report is decided there (sans-IO); this module only runs
//! agents and timers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crm::dc::ExecRequest;
use crm::exec::{ExecAction, RunResult};
use tokio::sync::mpsc;
use wire::NodeId;

/// Wire kind of [`ExecMsg`].
pub(crate) const EXEC_WIRE_KIND: u8 = 0x62;

/// An agent's result, back from its thread.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) req: ExecRequest,
    pub(crate) result: RunResult,
    /// The recurring monitor's generation (0 for one-shot operations).
    pub(crate) generation: u64,
}

/// Runs this node's agent operations.
pub(crate) struct Executor {
    me: NodeId,
    registry: Arc<agents::Registry>,
    /// Fence devices started on this node (their "running" state).
    devices: Devices,
    done: mpsc::UnboundedSender<Finished>,
    monitors: BTreeMap<u64, tokio::task::JoinHandle<()>>,
}

impl Executor {
    /// An executor for node `me`; finished operations arrive on the returned receiver.
    pub(crate) fn new(me: NodeId, ocf_root: &Path, rsctmp: &Path) -> (Executor, mpsc::UnboundedReceiver<Finished>) {
        // The agents' state directory must exist (Dummy and others refuse to start otherwise).
        if let Err(e) = std::fs::create_dir_all(rsctmp) {
            tracing::warn!(node = %me, dir = %rsctmp.display(), error = %e, "cannot create the agents' state directory");
        }
        let env = BTreeMap::from([("HA_RSCTMP".to_string(), rsctmp.display().to_string())]);
        let registry = Arc::new(agents::Registry::new(ocf_root).with_env(env));
        let (done, rx) = mpsc::unbounded_channel();
        let ex = Executor { me, registry, devices: Devices::default(), done, monitors: BTreeMap::new() };
        (ex, rx)
    }

    /// Runs or cancels an operation.
    pub(crate) fn run(&mut self, a: ExecAction) {
        {
            match a {
                ExecAction::Cancel { generation } => {
                    if let Some(t) = self.monitors.remove(&generation) {
                        t.abort();
                    }
                }
                ExecAction::Run { req, generation } => {
                    tracing::info!(node = %self.me, rsc = %req.rsc, op = %req.operation, interval_ms = req.interval_ms, key = %req.key, "executing");
                    let (registry, devices, done) = (self.registry.clone(), self.devices.clone(), self.done.clone());
                    let task = tokio::spawn(async move {
                        let every = std::time::Duration::from_millis(req.interval_ms);
                        loop {
                            let result = if req.class == "stonith" {
                                run_device(&devices, &req).await
                            } else {
                                run_agent(registry.clone(), &req).await
                            };
                            if done.send(Finished { req: (*req).clone(), result, generation }).is_err()
                                || generation == 0
                            {
                                return;
                            }
                            tokio::time::sleep(every).await;
                        }
                    });
                    if generation != 0 {
                        self.monitors.insert(generation, task);
                    }
                }
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        for t in self.monitors.values() {
            t.abort();
        }
    }
}

/// The fence devices started on this node.
type Devices = Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// A fence device as a resource (`class="stonith"`): start checks that the device answers
/// (its agent's monitor action) and marks it started here; stop unmarks it; a probe reports
/// whether it is started here; a recurring monitor checks the device again. Fencing itself is
/// the DC's fencer's work ([`crate::fenced`]).
async fn run_device(devices: &Devices, req: &ExecRequest) -> RunResult {
    let started = std::time::Instant::now();
    let result = |rc: agents::OcfRc, reason: Option<String>| RunResult {
        rc: i32::from(rc.code()),
        op_status: 0,
        reason,
        exec_ms: started.elapsed().as_millis() as u64,
        promotion: None,
    };
    let is_started = devices.lock().map(|d| d.contains(&req.rsc)).unwrap_or(false);
    match (req.operation.as_str(), req.interval_ms) {
        ("stop", _) => {
            if let Ok(mut d) = devices.lock() {
                d.remove(&req.rsc);
            }
            result(agents::OcfRc::Success, None)
        }
        ("monitor", 0) if !is_started => result(agents::OcfRc::NotRunning, None),
        ("monitor", _) if !is_started => {
            result(agents::OcfRc::NotRunning, Some("the device is not started here".into()))
        }
        ("start" | "monitor", _) => match check_device(req).await {
            Ok(()) => {
                if let Ok(mut d) = devices.lock() {
                    d.insert(req.rsc.clone());
                }
                result(agents::OcfRc::Success, None)
            }
            Err(e) => result(agents::OcfRc::ErrGeneric, Some(e)),
        },
        (op, _) => result(agents::OcfRc::ErrUnimplemented, Some(format!("a fence device has no {op} action"))),
    }
}

/// Asks the device whether it answers (the agent's monitor action), within the timeout.
async fn check_device(req: &ExecRequest) -> Result<(), String> {
    let doc_resource = crm::cib::Resource {
        id: req.rsc.clone(),
        kind: crm::cib::ResourceKind::Primitive {
            class: req.class.clone(),
            provider: req.provider.clone(),
            agent: req.agent.clone(),
        },
        meta: Vec::new(),
        params: vec![crm::cib::NvSet {
            id: String::new(),
            score: None,
            rule: None,
            pairs: req
                .params
                .iter()
                .map(|(k, v)| crm::cib::NvPair { id: String::new(), name: k.clone(), value: Some(v.clone()) })
                .collect(),
        }],
        utilization: Vec::new(),
        ops: Vec::new(),
    };
    let (_, params, agent) = crate::fenced::device(&doc_resource, &req.agent)?;
    let mut r = fencing::request_for(&params, fencing::Action::Monitor, None).map_err(|e| e.to_string())?;
    r.timeout = r.timeout.min(std::time::Duration::from_millis(req.timeout_ms.max(1)));
    let report = fencing::spawn(agent, r).await;
    match report.outcome {
        fencing::Outcome::Done(_) => Ok(()),
        fencing::Outcome::Failed(e) | fencing::Outcome::Unknown(e) => Err(e.to_string()),
    }
}

/// Runs an agent action on a blocking thread.
async fn run_agent(registry: Arc<agents::Registry>, req: &ExecRequest) -> RunResult {
    let req = req.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let failed = |rc: agents::OcfRc, reason: String| RunResult {
            rc: i32::from(rc.code()),
            op_status: 0,
            reason: Some(reason),
            exec_ms: 0,
            promotion: None,
        };
        // OCF 1.1's reload-agent is the agents' reload.
        let operation = if req.operation == "reload-agent" { "reload" } else { req.operation.as_str() };
        let action: agents::Action = match operation.parse() {
            Ok(a) => a,
            Err(e) => return failed(agents::OcfRc::ErrUnimplemented, e.to_string()),
        };
        let agent = match registry.get(&req.agent_name()) {
            Ok(a) => a,
            Err(e) => return failed(agents::OcfRc::ErrInstalled, e.to_string()),
        };
        let mut r = agents::Request::new(action, &req.rsc, req.params.clone())
            .timeout(std::time::Duration::from_millis(req.timeout_ms.max(1)));
        r.meta = req.meta.clone();
        r.meta.insert("on_node".into(), req.node_name.clone());
        r.interval = std::time::Duration::from_millis(req.interval_ms);
        let out = agents::execute(agent.as_ref(), &r);
        RunResult {
            rc: i32::from(out.rc.code()),
            op_status: match out.status {
                agents::ExecStatus::Done => 0,
                agents::ExecStatus::TimedOut => 2,
            },
            reason: out.reason,
            exec_ms: out.elapsed.as_millis() as u64,
            promotion: out.promotion,
        }
    })
    .await;
    joined.unwrap_or_else(|e| RunResult {
        rc: i32::from(agents::OcfRc::ErrGeneric.code()),
        op_status: 4,
        reason: Some(format!("the agent's thread failed: {e}")),
        exec_ms: 0,
        promotion: None,
    })
}
