//! The nginx agent: start with a validated config (`nginx -t` first), graceful then forced
//! stop, reload, and a monitor by pid and (depth 10) by an HTTP status URL.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::{configured, http, op_actions};
use crate::agent::{Op, Outcome, ResourceAgent};
use crate::error::AgentError;
use crate::events::Event;
use crate::proc;
use crate::rc::OcfRc;
use crate::schema::{ActionSpec, Metadata, ParamSpec, ParamType};

/// The nginx agent.
#[derive(Debug, Default)]
pub(crate) struct Nginx;

/// Where nginx writes its pid unless the config says otherwise.
const DEFAULT_PIDFILE: &str = "/run/nginx.pid";

struct Spec {
    httpd: PathBuf,
    config: PathBuf,
    pidfile: PathBuf,
}

/// The top-level `pid` directive of an nginx config, if any.
fn pid_directive(config: &str) -> Option<PathBuf> {
    let mut depth = 0i32;
    for raw in config.lines() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if depth == 0
            && let Some(rest) = line.strip_prefix("pid")
            && rest.starts_with(char::is_whitespace)
        {
            let v = rest
                .trim()
                .trim_end_matches(';')
                .trim()
                .trim_matches(['"', '\'']);
            return Some(PathBuf::from(v));
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
    }
    None
}

fn spec(op: &Op<'_>) -> Result<Spec, Outcome> {
    let config = PathBuf::from(op.params.str("configfile").unwrap_or_default());
    let text = std::fs::read_to_string(&config).map_err(|e| {
        configured(
            "configfile",
            format!("cannot read {}: {e}", config.display()),
        )
    })?;
    let httpd = PathBuf::from(op.params.str("httpd").unwrap_or("/usr/sbin/nginx"));
    if !httpd.is_file() {
        return Err(Outcome::fail(
            OcfRc::ErrInstalled,
            format!(
                "parameter `httpd`: {} does not exist on this node",
                httpd.display()
            ),
        ));
    }
    let pidfile = op
        .params
        .str("pidfile")
        .map(PathBuf::from)
        .or_else(|| pid_directive(&text))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIDFILE));
    Ok(Spec {
        httpd,
        config,
        pidfile,
    })
}

/// The master's pid when it runs: `Ok(None)` when stopped (no pid file, or a stale one).
fn running_pid(s: &Spec) -> Option<i32> {
    let text = std::fs::read_to_string(&s.pidfile).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    (pid > 1 && proc::alive(pid) && proc::comm(pid).starts_with("nginx")).then_some(pid)
}

fn nginx_cmd(s: &Spec) -> Command {
    let mut c = Command::new(&s.httpd);
    c.arg("-c").arg(&s.config);
    c
}

fn check_config(op: &Op<'_>, s: &Spec) -> Result<(), Outcome> {
    let mut cmd = nginx_cmd(s);
    cmd.arg("-t").arg("-q");
    let ran = proc::run(&mut cmd, op.deadline).map_err(|e| {
        Outcome::fail(
            OcfRc::ErrInstalled,
            format!("cannot run {}: {e}", s.httpd.display()),
        )
    })?;
    if ran.timed_out {
        return Err(Outcome::timed_out("nginx -t did not finish in time"));
    }
    if !ran.success() {
        return Err(Outcome::fail(
            OcfRc::ErrConfigured,
            format!(
                "nginx -t rejects {}: {}",
                s.config.display(),
                ran.describe()
            ),
        ));
    }
    Ok(())
}

fn status_check(op: &Op<'_>) -> Result<(), String> {
    let Some(url) = op.params.str("status10url") else {
        return Ok(());
    };
    match http::get(url, op.deadline) {
        Ok((200, _)) => Ok(()),
        Ok((code, _)) => Err(format!("{url} answered HTTP {code}")),
        Err(e) => Err(e),
    }
}

impl Nginx {
    fn do_start(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        if running_pid(&s).is_some() {
            return Ok(Outcome::ok());
        }
        check_config(op, &s)?;
        let _ = std::fs::remove_file(&s.pidfile);
        let mut cmd = nginx_cmd(&s);
        let ran = proc::run(&mut cmd, op.deadline).map_err(|e| {
            Outcome::fail(
                OcfRc::ErrInstalled,
                format!("cannot run {}: {e}", s.httpd.display()),
            )
        })?;
        if ran.timed_out {
            return Err(Outcome::timed_out("nginx did not daemonize in time"));
        }
        if !ran.success() {
            return Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!("nginx failed to start: {}", ran.describe()),
            ));
        }
        let mut last = String::from("no pid file yet");
        loop {
            if let Some(pid) = running_pid(&s) {
                match status_check(op) {
                    Ok(()) => {
                        Event::NginxStarted {
                            rsc: op.instance,
                            pid,
                        }
                        .log();
                        return Ok(Outcome::ok());
                    }
                    Err(e) => last = e,
                }
            }
            if !proc::pause(Duration::from_millis(10), op.deadline) {
                return Err(Outcome::timed_out(format!(
                    "nginx did not come up in time: {last}"
                )));
            }
        }
    }

    fn do_stop(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let Some(pid) = running_pid(&s) else {
            let _ = std::fs::remove_file(&s.pidfile);
            return Ok(Outcome::ok());
        };
        let master = Pid::from_raw(pid);
        let wait_gone = |until: Instant| {
            while proc::alive(pid) {
                if !proc::pause(Duration::from_millis(10), until) {
                    return false;
                }
            }
            true
        };
        // Graceful (QUIT) for up to half the time left, then fast (TERM) for half the rest.
        let _ = kill(master, Signal::SIGQUIT);
        if wait_gone(Instant::now() + op.remaining() / 2) {
            return Ok(Outcome::ok());
        }
        let _ = kill(master, Signal::SIGTERM);
        if wait_gone(Instant::now() + op.remaining() / 2) {
            return Ok(Outcome::ok().with_reason("graceful stop timed out; stopped with SIGTERM"));
        }
        // Master and workers share the master's process group (nginx calls setsid).
        let _ = killpg(master, Signal::SIGKILL);
        let _ = kill(master, Signal::SIGKILL);
        if wait_gone(op.deadline) {
            let _ = std::fs::remove_file(&s.pidfile);
            Event::NginxKilled {
                rsc: op.instance,
                pid,
            }
            .log();
            return Ok(Outcome::ok().with_reason("graceful stop timed out; killed with SIGKILL"));
        }
        Err(Outcome::timed_out(format!(
            "nginx master {pid} survived SIGKILL"
        )))
    }

    fn do_monitor(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        if running_pid(&s).is_none() {
            return Ok(if s.pidfile.exists() {
                Outcome::not_running()
                    .with_reason(format!("stale pid file {}", s.pidfile.display()))
            } else {
                Outcome::not_running()
            });
        }
        if op.depth >= 10
            && let Err(e) = status_check(op)
        {
            return Ok(Outcome::fail(
                OcfRc::ErrGeneric,
                format!("nginx runs but its status check failed: {e}"),
            ));
        }
        Ok(Outcome::ok())
    }

    fn do_reload(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let Some(pid) = running_pid(&s) else {
            return Err(Outcome::fail(
                OcfRc::NotRunning,
                "nginx is not running; nothing to reload",
            ));
        };
        check_config(op, &s)?;
        kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| {
            Outcome::fail(OcfRc::ErrGeneric, format!("cannot signal nginx {pid}: {e}"))
        })?;
        Ok(Outcome::ok())
    }
}

impl ResourceAgent for Nginx {
    fn meta_data(&self) -> Result<Metadata, AgentError> {
        let mut actions = op_actions(60, 60, 10, 30);
        actions.push(ActionSpec::monitor(
            Duration::from_secs(30),
            Duration::from_secs(30),
            10,
        ));
        actions.push(ActionSpec::new("reload", Duration::from_secs(40)));
        Ok(Metadata {
            name: "nginx".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            shortdesc: "nginx web server".into(),
            longdesc: "Starts nginx with a configuration checked by nginx -t, stops it gracefully (QUIT, then TERM, then KILL of its process group), reloads with HUP, and monitors the master pid and, at depth 10, a status URL. Parameter names follow the nginx OCF agent.".into(),
            params: vec![
                ParamSpec::new("configfile", ParamType::String, "Path to nginx.conf").required().unique(),
                ParamSpec::new("httpd", ParamType::String, "The nginx binary").default("/usr/sbin/nginx"),
                ParamSpec::new("pidfile", ParamType::String, "Pid file").long("Taken from the config's pid directive when not given, else /run/nginx.pid."),
                ParamSpec::new("status10url", ParamType::String, "URL that must answer 200 at monitor depth 10 (http:// only)"),
            ],
            actions,
        })
    }

    fn validate(&self, op: &Op<'_>) -> Outcome {
        spec(op)
            .and_then(|s| check_config(op, &s))
            .map_or_else(|o| o, |()| Outcome::ok())
    }

    fn start(&self, op: &Op<'_>) -> Outcome {
        self.do_start(op).unwrap_or_else(|o| o)
    }

    fn stop(&self, op: &Op<'_>) -> Outcome {
        self.do_stop(op).unwrap_or_else(|o| o)
    }

    fn monitor(&self, op: &Op<'_>) -> Outcome {
        self.do_monitor(op).unwrap_or_else(|o| o)
    }

    fn reload(&self, op: &Op<'_>) -> Outcome {
        self.do_reload(op).unwrap_or_else(|o| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn pid_directive_is_found_only_at_top_level() {
        let conf =
            "# pid /nope;\nworker_processes 1;\nhttp {\n pid /inner;\n}\npid /run/x.pid; # c\n";
        assert_eq!(pid_directive(conf), Some(PathBuf::from("/run/x.pid")));
        assert_eq!(pid_directive("events {}\n"), None);
        assert!(Path::new(DEFAULT_PIDFILE).is_absolute());
    }
}
