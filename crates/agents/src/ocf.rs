//! Runs any OCF resource agent script (`$OCF_ROOT/resource.d/PROVIDER/TYPE ACTION`) with the
//! standard environment, a deadline that kills the whole process group, exit-code mapping and
//! `ocf-exit-reason:` parsing. Its meta-data XML becomes the same [`Metadata`] native agents use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::agent::{Action, Op, Outcome, ResourceAgent};
use crate::error::AgentError;
use crate::proc;
use crate::rc::OcfRc;
use crate::schema::Metadata;

/// The standard OCF root.
pub const OCF_ROOT: &str = "/usr/lib/ocf";
/// The prefix an agent writes on stderr before its exit reason.
const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";
/// Meta-data must come back quickly; a hung meta-data action is a broken agent.
const META_DATA_TIMEOUT: Duration = Duration::from_secs(10);

/// An OCF resource agent script.
#[derive(Debug)]
pub struct OcfAgent {
    root: PathBuf,
    provider: String,
    kind: String,
    path: PathBuf,
    /// The parsed meta-data, once an invocation succeeded (failures are retried next time).
    metadata: Mutex<Option<(String, Metadata)>>,
    /// Extra environment for every invocation (e.g. `HA_RSCTMP`).
    env: BTreeMap<String, String>,
}

impl OcfAgent {
    /// The agent `provider`/`kind` under `root` (usually [`OCF_ROOT`]). Fails when the script is
    /// missing or not executable.
    pub fn new(root: &Path, provider: &str, kind: &str) -> Result<OcfAgent, AgentError> {
        let path = root.join("resource.d").join(provider).join(kind);
        Self::at(root, provider, kind, path)
    }

    /// An agent at an explicit `path` (for scripts outside the OCF tree).
    pub fn at(root: &Path, provider: &str, kind: &str, path: PathBuf) -> Result<OcfAgent, AgentError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).map_err(|source| AgentError::Exec { path: path.clone(), source })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(AgentError::Exec {
                path,
                source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "not an executable file"),
            });
        }
        Ok(OcfAgent {
            root: root.to_owned(),
            provider: provider.to_owned(),
            kind: kind.to_owned(),
            path,
            metadata: Mutex::new(None),
            env: BTreeMap::new(),
        })
    }

    /// Adds `vars` to the environment of every invocation (`HA_RSCTMP` for a node's own
    /// resource state directory, for example); the OCF variables still take precedence.
    pub fn with_env(mut self, vars: BTreeMap<String, String>) -> OcfAgent {
        self.env = vars;
        self
    }

    /// The script's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn full_name(&self) -> String {
        format!("ocf:{}:{}", self.provider, self.kind)
    }

    /// The environment for one invocation.
    fn command(&self, op: &OpEnv<'_>) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg(op.action.as_str())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("OCF_ROOT", &self.root)
            .env("OCF_RA_VERSION_MAJOR", "1")
            .env("OCF_RA_VERSION_MINOR", "1")
            .env("OCF_RESOURCE_INSTANCE", op.instance)
            .env("OCF_RESOURCE_TYPE", &self.kind)
            .env("OCF_RESOURCE_PROVIDER", &self.provider)
            .env("OCF_EXIT_REASON_PREFIX", EXIT_REASON_PREFIX)
            .env("OCF_RESKEY_crm_feature_set", "3.16.2")
            .env("OCF_RESKEY_CRM_meta_timeout", op.timeout.as_millis().to_string())
            .env("OCF_RESKEY_CRM_meta_interval", op.interval.as_millis().to_string())
            .env("OCF_RESKEY_CRM_meta_name", op.action.as_str())
            .env("HA_LOGFILE", "/dev/null")
            .env("HA_debug", "0");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if op.action == Action::Monitor {
            cmd.env("OCF_CHECK_LEVEL", op.depth.to_string());
        }
        if let Ok(node) = nix::unistd::gethostname() {
            cmd.env("OCF_RESKEY_CRM_meta_on_node", node.to_string_lossy().as_ref());
        }
        for (k, v) in op.params {
            cmd.env(format!("OCF_RESKEY_{k}"), v);
        }
        for (k, v) in op.meta {
            cmd.env(format!("OCF_RESKEY_CRM_meta_{k}"), v);
        }
        cmd
    }

    fn invoke(&self, op: &OpEnv<'_>) -> Outcome {
        let mut cmd = self.command(op);
        // Promotion scores the script sets with crm_master / crm_attribute land here.
        let attrs = attrs::Capture::new();
        if let Some(a) = &attrs {
            a.apply(&mut cmd);
        }
        let ran = match proc::run(&mut cmd, op.deadline) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::fail(OcfRc::ErrInstalled, format!("cannot run {}: {e}", self.path.display()));
            }
        };
        let reason = ran
            .stdout
            .lines()
            .chain(ran.stderr.lines())
            .filter_map(|l| l.trim().strip_prefix(EXIT_REASON_PREFIX))
            .map(|r| r.trim().to_owned())
            .rfind(|r| !r.is_empty());
        if ran.timed_out {
            let mut o = Outcome::timed_out(format!(
                "{} {} did not finish within {:.3}s; its process group was killed",
                self.full_name(),
                op.action,
                op.timeout.as_secs_f64()
            ));
            o.output = ran.stdout;
            return o;
        }
        let rc = match ran.code() {
            Some(c) => OcfRc::from_code((c & 0xff) as u8),
            None => {
                return Outcome { output: ran.stdout.clone(), ..Outcome::fail(OcfRc::ErrGeneric, ran.describe()) };
            }
        };
        let promotion = attrs.and_then(|a| a.promotion(op.instance));
        Outcome { rc, reason, timed_out: false, output: ran.stdout, promotion }
    }

    fn load_metadata(&self) -> Result<(String, Metadata), String> {
        let params = BTreeMap::new();
        let env = OpEnv {
            action: Action::MetaData,
            instance: &self.kind,
            params: &params,
            meta: &params,
            depth: 0,
            interval: Duration::ZERO,
            timeout: META_DATA_TIMEOUT,
            deadline: Instant::now() + META_DATA_TIMEOUT,
        };
        let out = self.invoke(&env);
        if out.rc != OcfRc::Success {
            return Err(format!("rc={}{}", out.rc, out.reason.map(|r| format!(" reason={r}")).unwrap_or_default()));
        }
        let md = Metadata::from_xml(&out.output).map_err(|e| e.to_string())?;
        Ok((out.output, md))
    }

    fn cached(&self) -> Result<(String, Metadata), AgentError> {
        let mut slot = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(md) = slot.as_ref() {
            return Ok(md.clone());
        }
        let md =
            self.load_metadata().map_err(|detail| AgentError::MetadataAction { agent: self.full_name(), detail })?;
        *slot = Some(md.clone());
        Ok(md)
    }

    fn run_op(&self, op: &Op<'_>) -> Outcome {
        self.invoke(&OpEnv {
            action: op.action,
            instance: op.instance,
            params: op.raw,
            meta: op.meta,
            depth: op.depth,
            interval: op.interval,
            timeout: op.timeout,
            deadline: op.deadline,
        })
    }
}

/// `crm_master` and `crm_attribute` for OCF scripts: promotable agents (databases, replicated
/// storage) publish their node's promotion score with them. Our versions write what the script
/// asks into a file of this invocation; the score is read back with the result.
mod attrs {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    const CRM_MASTER: &str = r#"#!/bin/sh
# crm_master as clusterd's executor provides it: this resource's promotion score on this node.
name="master-${OCF_RESOURCE_INSTANCE%%:*}"
exec "$(dirname "$0")/crm_attribute" --name "$name" "$@"
"#;

    const CRM_ATTRIBUTE: &str = r#"#!/bin/sh
# crm_attribute as clusterd's executor provides it: only promotion scores (master-*) of this
# node, for the agent being run; other attributes are accepted and ignored.
name=""; act=""; val=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--name) name="$2"; shift 2 ;;
    --name=*) name="${1#*=}"; shift ;;
    -v|--update|--value) val="$2"; act=set; shift 2 ;;
    --update=*|--value=*) val="${1#*=}"; act=set; shift ;;
    -D|--delete) act=del; shift ;;
    -G|--query) act=get; shift ;;
    -l|--lifetime|-N|--node|-t|--type|-r|--resource|-i|--id|-s|--set-name|-d|--default) shift 2 ;;
    *) shift ;;
  esac
done
case "$name" in master-*) ;; *) exit 0 ;; esac
[ -n "$HA_CLUSTERD_ATTRS" ] || exit 1
case "$act" in
  set) echo "set $name $val" >> "$HA_CLUSTERD_ATTRS" ;;
  del) echo "del $name" >> "$HA_CLUSTERD_ATTRS" ;;
  get) exit 105 ;;
esac
exit 0
"#;

    /// The directory holding the two commands (made once per process).
    fn shims() -> Option<&'static PathBuf> {
        static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
        DIR.get_or_init(|| {
            use std::os::unix::fs::PermissionsExt;
            let dir = std::env::temp_dir().join(format!("hc-ocf-bin-{}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            for (name, text) in [("crm_master", CRM_MASTER), ("crm_attribute", CRM_ATTRIBUTE)] {
                let p = dir.join(name);
                std::fs::write(&p, text).ok()?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).ok()?;
            }
            Some(dir)
        })
        .as_ref()
    }

    /// One invocation's file.
    pub(super) struct Capture {
        file: PathBuf,
        bin: &'static PathBuf,
    }

    impl Capture {
        pub(super) fn new() -> Option<Capture> {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let bin = shims()?;
            let file = bin.join(format!("attrs-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
            let _ = std::fs::remove_file(&file);
            Some(Capture { file, bin })
        }

        /// Puts the commands first in the script's PATH (and as `HA_SBIN_DIR`, where agents
        /// look for them) and names the file.
        pub(super) fn apply(&self, cmd: &mut Command) {
            cmd.env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.bin.display()))
                .env("HA_SBIN_DIR", self.bin)
                .env("HA_CLUSTERD_ATTRS", &self.file);
        }

        /// The last promotion score the script set or deleted for `instance` (its clone
        /// instance number dropped), if it touched it.
        pub(super) fn promotion(&self, instance: &str) -> Option<Option<i64>> {
            let text = std::fs::read_to_string(&self.file).ok()?;
            let base = instance.split(':').next().unwrap_or(instance);
            let name = format!("master-{base}");
            text.lines().rev().find_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("set"), Some(n), Some(v)) if n == name => {
                        // Scores are integers; INFINITY spellings are kept as the largest.
                        match v.trim_start_matches('+') {
                            "INFINITY" | "inf" => Some(Some(crate::SCORE_INFINITY)),
                            "-INFINITY" | "-inf" => Some(Some(-crate::SCORE_INFINITY)),
                            // Not a score: ignored, like any other malformed request.
                            x => x.parse().ok().map(Some),
                        }
                    }
                    (Some("del"), Some(n), _) if n == name => Some(None),
                    _ => None,
                }
            })
        }
    }

    impl Drop for Capture {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

struct OpEnv<'a> {
    action: Action,
    instance: &'a str,
    params: &'a BTreeMap<String, String>,
    meta: &'a BTreeMap<String, String>,
    depth: u32,
    interval: Duration,
    timeout: Duration,
    deadline: Instant,
}

impl ResourceAgent for OcfAgent {
    fn meta_data(&self) -> Result<Metadata, AgentError> {
        Ok(self.cached()?.1)
    }

    fn meta_data_xml(&self) -> Result<String, AgentError> {
        Ok(self.cached()?.0)
    }

    fn checks_params_by_schema(&self) -> bool {
        false
    }

    fn start(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
    fn stop(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
    fn monitor(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
    fn validate(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
    fn promote(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
    fn demote(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
    fn notify(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
    fn reload(&self, op: &Op<'_>) -> Outcome {
        self.run_op(op)
    }
}

/// Lists `(provider, type)` of every executable under `root/resource.d`, sorted.
pub fn discover(root: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let Ok(providers) = std::fs::read_dir(root.join("resource.d")) else {
        return found;
    };
    for p in providers.flatten() {
        let Ok(entries) = std::fs::read_dir(p.path()) else {
            continue;
        };
        let provider = p.file_name().to_string_lossy().into_owned();
        for e in entries.flatten() {
            let is_exec = std::fs::metadata(e.path()).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            let name = e.file_name().to_string_lossy().into_owned();
            if is_exec && !name.starts_with('.') {
                found.push((provider.clone(), name));
            }
        }
    }
    found.sort();
    found
}
