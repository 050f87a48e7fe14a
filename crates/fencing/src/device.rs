//! From device parameters to an agent: `agent=ipmi|libvirt|ec2|fence_*` picks the driver.

use std::time::{Duration, Instant};

use crate::agent::{Action, AgentError, FenceAgent, Outcome, Request};
use crate::ec2::Ec2Agent;
use crate::ipmi::IpmiAgent;
use crate::libvirt::LibvirtAgent;
use crate::metadata::Metadata;
use crate::params::Params;
use crate::script::ScriptAgent;

/// The native agent types.
pub const NATIVE_AGENTS: [&str; 3] = ["ipmi", "libvirt", "ec2"];

/// Builds the agent named by the `agent` parameter.
pub fn build_agent(params: &Params) -> Result<Box<dyn FenceAgent>, AgentError> {
    let agent = params.require(
        &["agent"],
        "agent type: ipmi, libvirt, ec2 or a fence_* script",
    )?;
    Ok(match agent {
        "ipmi" => Box::new(IpmiAgent::from_params(params)?),
        "libvirt" => Box::new(LibvirtAgent::from_params(params)?),
        "ec2" => Box::new(Ec2Agent::from_params(params)?),
        other => Box::new(ScriptAgent::new(other, params)?),
    })
}

/// The metadata of an agent type (a native name, or a fence-agents script run with
/// `action=metadata`).
pub fn describe(agent: &str, timeout: Duration) -> Result<Metadata, AgentError> {
    match agent {
        "ipmi" => Ok(IpmiAgent::describe()),
        "libvirt" => Ok(LibvirtAgent::describe()),
        "ec2" => Ok(Ec2Agent::describe()),
        other => {
            let script = ScriptAgent::new(other, &Params::default())?;
            match script.metadata(Instant::now() + timeout) {
                Outcome::Done(m) => Ok(m),
                Outcome::Failed(e) | Outcome::Unknown(e) => Err(e),
            }
        }
    }
}

/// A request for `action` with the device's `pcmk_<action>_timeout` and
/// `pcmk_<action>_retries` (and the generic `timeout`/`retries`) applied.
pub fn request_for(
    params: &Params,
    action: Action,
    plug: Option<&str>,
) -> Result<Request, AgentError> {
    let mut r = Request::new(action, plug.or(params.get(&["plug", "port"])));
    let t = format!("pcmk_{action}_timeout");
    let n = format!("pcmk_{action}_retries");
    r.timeout = params.duration(&[t.as_str(), "timeout"], r.timeout)?;
    r.retries = params.number(&[n.as_str(), "retries"], r.retries)?;
    if r.timeout.is_zero() {
        return Err(AgentError::Config {
            field: t,
            problem: "a zero timeout can never succeed; use e.g. 20s".into(),
        });
    }
    Ok(r)
}

/// One device action tried by hand (`crmctl stonith test`): the plug and its report.
#[derive(Debug)]
pub struct HandRun {
    /// The plug acted on.
    pub plug: Option<String>,
    /// What happened.
    pub report: crate::agent::Report,
}

/// Runs `action` on the device described by `params`, without the daemon. With `target`, the
/// node name is mapped to plugs through `pcmk_host_map` (every plug is acted on, in order,
/// stopping at the first that does not confirm); otherwise `plug`/`port` from the
/// parameters is used. `timeout`/`retries` override the device's own.
pub fn run_by_hand(
    params: &Params,
    action: Action,
    target: Option<&str>,
    timeout: Option<Duration>,
    retries: Option<u32>,
) -> Result<Vec<HandRun>, AgentError> {
    let agent: std::sync::Arc<dyn FenceAgent> = std::sync::Arc::from(build_agent(params)?);
    let plugs: Vec<Option<String>> = match target {
        Some(t) => {
            let cfg = crate::fencer::DeviceConfig::new("cli", params.clone(), true)?;
            if cfg.check == crate::fencer::HostCheck::StaticList && !cfg.statically_lists(t) {
                return Err(AgentError::Config {
                    field: "pcmk_host_list".into(),
                    problem: format!(
                        "node {t} is in neither pcmk_host_list nor pcmk_host_map of this device"
                    ),
                });
            }
            cfg.plugs_for(t).into_iter().map(Some).collect()
        }
        None => vec![params.get(&["plug", "port"]).map(str::to_owned)],
    };
    let mut runs = Vec::new();
    for plug in plugs {
        let mut req = request_for(params, action, plug.as_deref())?;
        if let Some(t) = timeout {
            req.timeout = t;
        }
        if let Some(r) = retries {
            req.retries = r;
        }
        let report = crate::agent::spawn(std::sync::Arc::clone(&agent), req).wait();
        let ok = matches!(report.outcome, Outcome::Done(_));
        runs.push(HandRun { plug, report });
        if !ok {
            break;
        }
    }
    Ok(runs)
}
