//! The reverse of the OCF runner: any [`ResourceAgent`] run with the OCF calling convention
//! (action in argv, parameters in `OCF_RESKEY_*`), so that a cluster manager or `ocf-tester`
//! can drive the native agents through a one-line wrapper script.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::agent::{Action, ExecStatus, Request, ResourceAgent, execute};

/// What a script invocation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// The exit code.
    pub code: u8,
    /// Standard output (meta-data XML).
    pub stdout: String,
    /// Standard error (`ocf-exit-reason:` line).
    pub stderr: String,
}

/// Runs `action` on `agent` with the parameters, meta attributes, depth, instance and timeout
/// found in `env` (the process environment of an OCF script).
pub fn run_as_ocf_script(
    agent: &dyn ResourceAgent,
    action: &str,
    env: &BTreeMap<String, String>,
) -> ScriptOutput {
    let Ok(action) = action.parse::<Action>() else {
        return ScriptOutput {
            code: 3,
            stdout: String::new(),
            stderr: format!(
                "ocf-exit-reason:unknown action `{action}`; use start, stop, monitor, validate-all or meta-data\n"
            ),
        };
    };
    let mut params = BTreeMap::new();
    let mut meta = BTreeMap::new();
    for (k, v) in env {
        if let Some(m) = k.strip_prefix("OCF_RESKEY_CRM_meta_") {
            meta.insert(m.to_owned(), v.clone());
        } else if let Some(p) = k.strip_prefix("OCF_RESKEY_")
            && p != "crm_feature_set"
        {
            params.insert(p.to_owned(), v.clone());
        }
    }
    let timeout = meta
        .get("timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut req = Request::new(
        action,
        env.get("OCF_RESOURCE_INSTANCE")
            .map_or("default", String::as_str),
        params,
    );
    req.depth = env
        .get("OCF_CHECK_LEVEL")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    req.interval = meta
        .get("interval")
        .and_then(|i| i.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    req.timeout = timeout;
    req.meta = meta;
    let r = execute(agent, &req);
    let code = match r.status {
        ExecStatus::TimedOut => 1,
        ExecStatus::Done => r.rc.code(),
    };
    ScriptOutput {
        code,
        stdout: r.output,
        stderr: r
            .reason
            .map(|reason| format!("ocf-exit-reason:{reason}\n"))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_ocf_environment_becomes_a_request() {
        let vip = crate::Registry::default().get("vip").unwrap();
        let out = run_as_ocf_script(
            vip.as_ref(),
            "validate-all",
            &env(&[
                ("OCF_RESKEY_ip", "10.0.0.1"),
                ("OCF_RESKEY_cidr_netmask", "x"),
                ("OCF_RESKEY_crm_feature_set", "3.16.2"),
                ("OCF_RESKEY_CRM_meta_timeout", "5000"),
                ("OCF_ROOT", "/usr/lib/ocf"),
            ]),
        );
        assert_eq!(out.code, 6);
        assert_eq!(
            out.stderr,
            "ocf-exit-reason:parameter `cidr_netmask`: `x` is not an integer\n"
        );
        let md = run_as_ocf_script(vip.as_ref(), "meta-data", &BTreeMap::new());
        assert_eq!(md.code, 0);
        assert!(crate::Metadata::from_xml(&md.stdout).is_ok());
        assert_eq!(
            run_as_ocf_script(vip.as_ref(), "migrate_to", &BTreeMap::new()).code,
            3
        );
    }
}
