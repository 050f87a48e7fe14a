//! `crmctl resource ...`: create, update, delete, enable/disable, move/ban/clear, cleanup and
//! read resources. The edits are `crm::edit` functions; this module parses the pcs-style
//! grammar (bare `key=value` words, `op ACTION k=v`, `meta k=v`, `clone`), and runs every
//! mutation the same way ([`mutate`]): read the CIB (live, or `-f FILE` offline), apply the
//! edit, validate, then print the transition it would cause (`--dry-run`), write the file
//! atomically, or replace the live configuration under the daemon's epoch guard (retrying
//! when someone else changed it meanwhile), and with `--wait` poll until the policy engine
//! has nothing left to do and check the requested end state.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use clusterd::control::{Request, Response};
use crm::cib::{Cib, Configuration, Resource, ResourceKind, Role};
use crm::edit::{self, EditError, Goal, Notes, OpSpec, Placement, Position, PrimitiveSpec};
use crm::scheduler::{RscView, Transition};

use crate::exit::Exit;

// ---------------------------------------------------------------------------------------------
// Shared by every configuration verb (resource, node, constraint, property)

/// Flags every configuration verb takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct EditFlags {
    /// Work offline on a saved CIB file (a Pacemaker CIB XML), edited in place atomically.
    #[arg(short = 'f', long = "file", global = true)]
    pub(crate) file: Option<PathBuf>,
    /// Print the transition the change would cause, and change nothing.
    #[arg(long, global = true)]
    pub(crate) dry_run: bool,
    /// With --dry-run: exit 107 when the change would stop, move, restart or fence anything.
    #[arg(long, global = true, requires = "dry_run")]
    pub(crate) fail_on_disruption: bool,
    /// After the change, wait until the cluster settles (default 60s), then check the result:
    /// exit 0 when reached, 1 when settled otherwise, 124 on timeout.
    #[arg(long, value_name = "DUR", num_args = 0..=1, require_equals = true, default_missing_value = "60s", global = true)]
    pub(crate) wait: Option<String>,
    /// Refuse (exit 103) unless the configuration is still at this version (its epoch, as
    /// `config export` prints it).
    #[arg(long, value_name = "N", global = true)]
    pub(crate) if_version: Option<u64>,
    /// clusterd's runtime directory (where its control socket is).
    #[arg(long, default_value = "/run/clusterd", global = true)]
    pub(crate) run_dir: PathBuf,
    /// Output of reads: text, json (with api_version), or cmd (the crmctl commands that
    /// recreate the configuration read).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text, global = true)]
    pub(crate) output: Output,
}

/// Output formats of reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// For people.
    #[default]
    Text,
    /// For programs: a versioned schema (`api_version`).
    Json,
    /// The crmctl commands that recreate what was read (configuration reads).
    Cmd,
}

/// The version of the JSON schema of reads.
pub(crate) const API_VERSION: u32 = 1;

/// A duration in milliseconds the way Pacemaker writes it (`10s`, `5min`, `500ms`).
pub(crate) fn duration_text(ms: u64) -> String {
    if ms > 0 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms > 0 && ms.is_multiple_of(60_000) {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub(crate) fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/=,@+%".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn edit_error(e: EditError) -> anyhow::Error {
    let code = match e {
        EditError::NotFound { .. } => Exit::NO_SUCH,
        EditError::Exists { .. } => Exit::EXISTS,
        _ => Exit::INVALID_PARAM,
    };
    Exit::error(code, e.to_string())
}

/// The CIB to edit: from the file, or the live one with the partition's quorum.
pub(crate) fn load(flags: &EditFlags) -> anyhow::Result<(Cib, Option<bool>)> {
    match &flags.file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Exit::error(Exit::NO_INPUT, format!("cannot read {}: {e}", f.display())))?;
            let (cib, _) =
                crm::cib::parse_cib(&text).map_err(|e| Exit::error(Exit::CONFIG, format!("{}: {e}", f.display())))?;
            Ok((cib, None))
        }
        None => {
            let report = crate::cmd_config::live(&flags.run_dir)?;
            let (cib, _) = crm::cib::parse_cib(&report.xml)
                .map_err(|e| Exit::error(Exit::CONFIG, format!("the live CIB: {e}")))?;
            Ok((cib, Some(report.quorate)))
        }
    }
}

fn print_notes(notes: &Notes) {
    for n in notes {
        println!("  {n}");
    }
}

fn find_view<'a>(views: &'a [RscView], id: &str) -> Option<&'a RscView> {
    views.iter().find_map(|v| if v.id == id { Some(v) } else { find_view(&v.children, id) })
}

fn executable(t: &Transition) -> usize {
    t.executable().filter(|a| !a.pseudo).count()
}

/// Runs one mutation: read, edit, validate, then dry-run, write the file, or replace the live
/// configuration (retrying on a concurrent change unless `--if-version` pins the version),
/// then `--wait` for `goal`.
pub(crate) fn mutate(
    flags: &EditFlags,
    what: &str,
    edit: impl Fn(&mut Configuration) -> Result<Notes, EditError>,
    goal: Goal,
) -> anyhow::Result<ExitCode> {
    if flags.file.is_some() && flags.wait.is_some() {
        return Err(Exit::error(Exit::USAGE, "--wait needs the live cluster; it cannot be used with -f FILE"));
    }
    let wait = flags
        .wait
        .as_deref()
        .map(|w| {
            agents::parse_duration(w)
                .ok_or_else(|| Exit::error(Exit::USAGE, format!("--wait={w}: not a duration (use 30s, 5min, 1h)")))
        })
        .transpose()?;
    const ATTEMPTS: usize = 8;
    for attempt in 1..=ATTEMPTS {
        let (mut cib, quorum) = load(flags)?;
        let epoch = cib.version.epoch;
        if let Some(want) = flags.if_version
            && want != epoch
        {
            return Err(Exit::error(
                Exit::OLD,
                format!(
                    "the configuration is at version {epoch}, not {want}: someone changed it since you read it; \
                     review it (crmctl config export) and redo the change with --if-version {epoch}"
                ),
            ));
        }
        let original = flags.dry_run.then(|| cib.clone());
        let notes = edit(&mut cib.config).map_err(edit_error)?;
        let problems = crm::cib::validate(&cib);
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(Exit::error(
                Exit::CONFIG,
                format!("the change would make the configuration invalid; nothing changed:\n  {}", list.join("\n  ")),
            ));
        }
        if flags.dry_run {
            let t = crm::schedule(&cib, quorum, cib.execution_date.unwrap_or_else(now));
            println!("{what} (dry run: nothing changed)");
            print_notes(&notes);
            println!();
            print!("{}", crm::simulate::format_summary(&t));
            let (line, disruptive) = edit::risk(&t.summary, edit::fencing_enabled(&cib.config));
            println!("{line}");
            if let Some(before) = original {
                let pending = crm::schedule(&before, quorum, before.execution_date.unwrap_or_else(now)).summary;
                if !pending.is_empty() {
                    println!("note: without this change the cluster would already do:");
                    for l in pending {
                        println!("  * {l}");
                    }
                }
            }
            if disruptive && flags.fail_on_disruption {
                return Err(Exit::error(Exit::UNSAFE, "the change disturbs running resources (--fail-on-disruption)"));
            }
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(path) = &flags.file {
            cib.version.epoch += 1;
            cib.version.num_updates = 0;
            durable::write_atomic(path, crm::cib::to_xml(&cib).as_bytes(), 0o644)
                .map_err(|e| Exit::error(Exit::CANT_CREATE, format!("cannot write {}: {e}", path.display())))?;
            println!("{what}: {} (version {})", path.display(), cib.version.epoch);
            print_notes(&notes);
            return Ok(ExitCode::SUCCESS);
        }
        let xml = crm::replica::configuration_of(&crm::cib::to_xml(&cib))
            .map_err(|e| Exit::error(Exit::ERROR, format!("cannot export the edited configuration: {e}")))?;
        match crate::daemon::ask(&flags.run_dir, &Request::CibReplaceConfiguration { xml, if_epoch: Some(epoch) }) {
            Ok(Response::Done(done)) => {
                println!("{what}: {done}");
                print_notes(&notes);
                break;
            }
            Ok(_) => return Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
            Err(e) if format!("{e:#}").contains("changed meanwhile") => {
                if flags.if_version.is_some() {
                    return Err(Exit::error(Exit::OLD, format!("{e:#}")));
                }
                if attempt == ATTEMPTS {
                    return Err(Exit::error(
                        Exit::OLD,
                        format!("the configuration kept changing under this command ({ATTEMPTS} tries); try again"),
                    ));
                }
                eprintln!("the configuration changed meanwhile; reading it again (try {} of {ATTEMPTS})", attempt + 1);
                // Back off a little, differently per process, so racing writers spread out.
                let jitter = u64::from(std::process::id() % 7) * 15;
                std::thread::sleep(Duration::from_millis(40 * attempt as u64 + jitter));
            }
            Err(e) => return Err(e),
        }
    }
    match wait {
        Some(timeout) => wait_for(&flags.run_dir, timeout, &goal),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// How long the policy engine must keep finding nothing to do before the cluster counts as
/// settled when the DC has not said whether it runs a transition: an action already under way
/// that a change made moot is not in the CIB until it completes, and its result may give the
/// policy engine work again.
const SETTLE_WINDOW: Duration = Duration::from_secs(1);

/// Polls the live CIB until the policy engine finds nothing to do (for [`SETTLE_WINDOW`]),
/// then checks `goal`.
pub(crate) fn wait_for(run_dir: &Path, timeout: Duration, goal: &Goal) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let mut settled_since: Option<Instant> = None;
    loop {
        let report = crate::cmd_config::live(run_dir)?;
        let last = if report.synced {
            let (cib, _) = crm::cib::parse_cib(&report.xml)
                .map_err(|e| Exit::error(Exit::CONFIG, format!("the live CIB: {e}")))?;
            let t = crm::schedule(&cib, Some(report.quorate), cib.execution_date.unwrap_or_else(now));
            let pending = executable(&t);
            if pending == 0 && report.transition_running == Some(true) {
                settled_since = None;
                "the DC is still carrying out a transition".to_string()
            } else if pending == 0 {
                let since = *settled_since.get_or_insert_with(Instant::now);
                // The DC says it is idle: nothing under way can change the picture. Without
                // that word (not said yet in this view), wait the window.
                let idle = report.transition_running == Some(false);
                if idle || since.elapsed() >= SETTLE_WINDOW || start.elapsed() >= timeout {
                    return match edit::check_goal(&t.current, goal) {
                        Ok(msg) => {
                            println!("settled after {:.1}s: {msg}", start.elapsed().as_secs_f64());
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(msg) => Err(Exit::error(Exit::ERROR, format!("the cluster settled, but {msg}"))),
                    };
                }
                String::new()
            } else {
                settled_since = None;
                format!("{pending} action(s) pending: {}", t.summary.join("; "))
            }
        } else {
            settled_since = None;
            "the nodes are synchronizing their copies".to_string()
        };
        if settled_since.is_none() && start.elapsed() >= timeout {
            return Err(Exit::error(Exit::TIMEOUT, format!("not settled within {}s ({last})", timeout.as_secs_f64())));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// The grammar

/// Bare words after the id: `k=v` (instance attributes), then keyword sections.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Words {
    pub(crate) params: Vec<(String, String)>,
    pub(crate) ops: Vec<OpSpec>,
    pub(crate) meta: Vec<(String, String)>,
    pub(crate) utilization: Vec<(String, String)>,
    /// `clone [ID] k=v...` or `promotable [ID] k=v...`.
    pub(crate) clone: Option<CloneWords>,
}

/// `clone [ID] k=v...` or `promotable [ID] k=v...`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CloneWords {
    pub(crate) id: Option<String>,
    pub(crate) meta: Vec<(String, String)>,
    pub(crate) promotable: bool,
}

/// Splits `k=v` (the value may be empty, which unsets).
pub(crate) fn key_value(word: &str) -> Option<(String, String)> {
    word.split_once('=').filter(|(k, _)| !k.is_empty()).map(|(k, v)| (k.to_string(), v.to_string()))
}

/// Parses `[k=v…] [op ACTION k=v…]… [meta k=v…] [utilization k=v…] [clone [ID] k=v… | promotable [ID] k=v…]`.
pub(crate) fn parse_words(words: &[String], allow_clone: bool) -> anyhow::Result<Words> {
    enum Section {
        Params,
        Op,
        Meta,
        Util,
        Clone,
    }
    let usage = |m: String| Exit::error(Exit::USAGE, m);
    let mut w = Words::default();
    let mut section = Section::Params;
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if let Some(kv) = key_value(word) {
            match section {
                Section::Params => w.params.push(kv),
                Section::Op => w.ops.last_mut().map(|o| o.attrs.push(kv)).unwrap_or(()),
                Section::Meta => w.meta.push(kv),
                Section::Util => w.utilization.push(kv),
                Section::Clone => w.clone.as_mut().map(|c| c.meta.push(kv)).unwrap_or(()),
            }
            continue;
        }
        match word.as_str() {
            "op" => {
                let action = words
                    .get(i)
                    .filter(|a| !a.contains('='))
                    .ok_or_else(|| usage("`op` needs an action: op monitor interval=10s".into()))?;
                i += 1;
                w.ops.push(OpSpec { action: action.clone(), attrs: Vec::new() });
                section = Section::Op;
            }
            "meta" => section = Section::Meta,
            "utilization" => section = Section::Util,
            "clone" | "promotable" | "master" if allow_clone => {
                if w.clone.is_some() {
                    return Err(usage("give `clone` or `promotable` once".into()));
                }
                let id = words
                    .get(i)
                    .filter(|x| !x.contains('=') && !matches!(x.as_str(), "op" | "meta" | "utilization"))
                    .cloned();
                if id.is_some() {
                    i += 1;
                }
                w.clone = Some(CloneWords { id, meta: Vec::new(), promotable: word != "clone" });
                section = Section::Clone;
            }
            other => {
                return Err(usage(format!(
                    "unexpected word '{other}': expected key=value, op ACTION key=value, meta key=value{}",
                    if allow_clone { ", clone or promotable" } else { "" }
                )));
            }
        }
    }
    Ok(w)
}

/// Resolves an agent name: `class:provider:type` as given, a short name through the agents
/// installed here.
fn resolve_agent(name: &str, ocf_root: &Path) -> anyhow::Result<edit::AgentSpec> {
    if name.contains(':') {
        let parts = name.split(':').count();
        if parts == 3 || name.starts_with("systemd:") || parts == 2 && !name.starts_with("ocf:") {
            return edit::parse_agent(name).map_err(edit_error);
        }
    }
    let reg = agents::Registry::new(ocf_root);
    match reg.resolve(name) {
        Ok(full) => edit::parse_agent(&full.to_string()).map_err(edit_error),
        Err(e) => Err(Exit::error(
            Exit::INVALID_PARAM,
            format!("field agent: {e}; name it in full as class:provider:type (for example ocf:heartbeat:{name})"),
        )),
    }
}

/// The meta-data of the agent, when it is installed here.
fn metadata(agent: &edit::AgentSpec, ocf_root: &Path) -> Option<agents::Metadata> {
    let full = match &agent.provider {
        Some(p) => format!("{}:{p}:{}", agent.class, agent.agent),
        None => format!("{}:{}", agent.class, agent.agent),
    };
    agents::Registry::new(ocf_root).get(&full).ok()?.meta_data().ok()
}

/// Checks parameters against the agent's meta-data: every problem at once.
fn validate_params(md: &agents::Metadata, params: &[(String, String)]) -> anyhow::Result<()> {
    let raw: std::collections::BTreeMap<String, String> = params.iter().cloned().collect();
    let mut list: Vec<String> = match md.validate(&raw) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| format!("field {}: {e}", e.param())).collect(),
    };
    // Agents often declare a required parameter with an empty default: still required.
    for p in md.params.iter().filter(|p| p.required && p.default.as_deref().unwrap_or("").is_empty()) {
        if raw.get(&p.name).is_none_or(String::is_empty)
            && !list.iter().any(|l| l.starts_with(&format!("field {}:", p.name)))
        {
            list.push(format!(
                "field {}: parameter `{}` is required ({}); set {}=…",
                p.name, p.name, p.shortdesc, p.name
            ));
        }
    }
    if list.is_empty() {
        return Ok(());
    }
    Err(Exit::error(Exit::INVALID_PARAM, format!("{}\n(--no-validate creates it anyway)", list.join("\n"))))
}

/// The default ops of an installed agent (start, stop, monitor, promote, demote), with the
/// timeouts (and monitor interval) its meta-data advertises; ops the user gave are kept.
fn default_ops(md: &agents::Metadata, given: &[OpSpec]) -> Vec<OpSpec> {
    let mut out = Vec::new();
    for name in ["start", "stop", "monitor", "promote", "demote"] {
        if given.iter().any(|o| o.action == name) {
            continue;
        }
        let Some(spec) = md.actions.iter().find(|s| s.name == name && s.role.is_none()).or(md.action(name)) else {
            continue;
        };
        let mut attrs = Vec::new();
        let interval = spec.interval.map_or(0, |i| i.as_millis() as u64);
        if name == "monitor" {
            attrs.push(("interval".to_string(), format!("{}ms", interval.max(1000))));
        } else {
            attrs.push(("interval".to_string(), "0s".to_string()));
        }
        attrs.push(("timeout".to_string(), format!("{}ms", spec.timeout.as_millis())));
        out.push(OpSpec { action: name.to_string(), attrs });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The commands

/// `crmctl resource`.
#[derive(Debug, Args)]
pub(crate) struct ResourceArgs {
    #[command(subcommand)]
    command: ResourceCommand,
    #[command(flatten)]
    flags: EditFlags,
}

#[derive(Debug, Subcommand)]
enum ResourceCommand {
    /// List resources and where they run.
    #[command(alias = "status")]
    List {
        /// Only this resource (and its children).
        rsc: Option<String>,
    },
    /// Show the configuration of resources (all, or those named).
    Config {
        /// Resource ids.
        ids: Vec<String>,
    },
    /// Create a primitive: `create R AGENT [k=v…] [op ACTION k=v…]… [meta k=v…] [clone [CID] k=v… | promotable [CID] k=v…]`.
    Create {
        /// Resource id.
        id: String,
        /// `class:provider:type`, or a short type name of an agent installed here.
        agent: String,
        /// Parameters, then `op ACTION k=v…`, `meta k=v…`, `utilization k=v…`, `clone`/`promotable`.
        #[arg(value_name = "WORDS")]
        words: Vec<String>,
        /// Put it into this group (created when missing).
        #[arg(long)]
        group: Option<String>,
        /// In the group, just before this member.
        #[arg(long, requires = "group", conflicts_with = "after")]
        before: Option<String>,
        /// In the group, just after this member.
        #[arg(long, requires = "group")]
        after: Option<String>,
        /// Create it stopped (target-role=Stopped).
        #[arg(long)]
        disabled: bool,
        /// Do not add the agent's default operations.
        #[arg(long)]
        no_default_ops: bool,
        /// Do not check the parameters against the agent's meta-data.
        #[arg(long)]
        no_validate: bool,
        /// OCF root (for short agent names and default ops).
        #[arg(long, default_value = agents::OCF_ROOT)]
        ocf_root: PathBuf,
    },
    /// Change parameters, ops or meta attributes: `update R [k=v…] [op ACTION k=v…] [meta k=v…]`; `k=` unsets.
    Update {
        /// Resource id.
        id: String,
        /// Parameters, `op ACTION k=v…`, `meta k=v…`.
        #[arg(value_name = "WORDS")]
        words: Vec<String>,
    },
    /// Change meta attributes: `meta R k=v…`.
    Meta {
        /// Resource id.
        id: String,
        /// Meta attributes.
        #[arg(value_name = "K=V")]
        pairs: Vec<String>,
    },
    /// Delete resources and the constraints that name them. On the live cluster, running
    /// resources are stopped first (and the delete waits for that), so a failed stop leaves
    /// them configured rather than orphaned.
    #[command(alias = "remove")]
    Delete {
        /// Resource ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Delete without stopping first (the cluster then stops them as removed resources).
        #[arg(long, requires = "yes")]
        no_stop: bool,
        /// Confirm --no-stop.
        #[arg(long)]
        yes: bool,
    },
    /// Let resources run (removes target-role).
    #[command(alias = "start")]
    Enable {
        /// Resource ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop resources (target-role=Stopped).
    #[command(alias = "stop")]
    Disable {
        /// Resource ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Move a resource to a node (cli-prefer-R); without a node, away from where it runs (cli-ban).
    #[command(alias = "migrate")]
    Move {
        /// Resource id.
        id: String,
        /// Destination node.
        node: Option<String>,
        /// Move the promoted role only.
        #[arg(long)]
        promoted: bool,
        /// Let the constraint expire after this long (not supported yet).
        #[arg(long)]
        lifetime: Option<String>,
        /// Keep the move's constraint once it has moved (by default, on the live cluster, the
        /// move waits for the resource to arrive and then removes its constraint, unless that
        /// would send the resource back).
        #[arg(long)]
        keep_constraint: bool,
    },
    /// Keep a resource off a node (cli-ban-R-on-N); without a node, off the one it runs on.
    Ban {
        /// Resource id.
        id: String,
        /// Node.
        node: Option<String>,
        /// Ban the promoted role only.
        #[arg(long)]
        promoted: bool,
        /// Let the constraint expire after this long (not supported yet).
        #[arg(long)]
        lifetime: Option<String>,
    },
    /// Remove the constraints left by move and ban (for one node, or all).
    #[command(aliases = ["unmove", "unban"])]
    Clear {
        /// Resource id.
        id: String,
        /// Only those about this node.
        node: Option<String>,
    },
    /// Let the cluster manage resources again (removes is-managed).
    Manage {
        /// Resource ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Also enable their recurring monitors again.
        #[arg(long)]
        monitor: bool,
    },
    /// Leave resources alone: no starts, stops or recovery (is-managed=false).
    Unmanage {
        /// Resource ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Also disable their recurring monitors.
        #[arg(long)]
        monitor: bool,
    },
    /// Stop a resource and start it again, waiting for each (default 60s per step).
    Restart {
        /// Resource id.
        id: String,
    },
    /// Operations: `op add R ACTION k=v…`, `op remove R ACTION|OPID [interval=I]`.
    Op {
        #[command(subcommand)]
        command: OpCommand,
    },
    /// Groups: `group add G R… [--before R|--after R]`, `group remove G [R…]`.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Dissolve a group (or take some members out): `ungroup G [R…]`.
    Ungroup {
        /// The group.
        group: String,
        /// Only these members (default: all).
        members: Vec<String>,
    },
    /// Forget a resource's failures and history so it is probed again: `cleanup [R] [node=N]`.
    Cleanup {
        /// `R` and/or `node=N`.
        #[arg(value_name = "WORDS")]
        words: Vec<String>,
    },
    /// Show fail counts: `failcount [show] [R] [node=N]`.
    Failcount {
        /// `show`, `R` and/or `node=N`.
        #[arg(value_name = "WORDS")]
        words: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum OpCommand {
    /// Add an operation: `op add R ACTION k=v…`.
    Add {
        /// Resource id.
        id: String,
        /// monitor, start, stop, promote, demote, ...
        action: String,
        /// interval=, timeout=, role=, on-fail=, ...
        #[arg(value_name = "K=V")]
        pairs: Vec<String>,
    },
    /// Remove operations: by id, or by action (with interval=I, only that one).
    #[command(alias = "delete")]
    Remove {
        /// Resource id.
        id: String,
        /// An action name or an op id.
        which: String,
        /// `interval=I`.
        #[arg(value_name = "interval=I")]
        pairs: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Put primitives into a group (created when missing).
    Add {
        /// The group.
        group: String,
        /// The primitives, in order.
        #[arg(required = true)]
        members: Vec<String>,
        /// Just before this member.
        #[arg(long, conflicts_with = "after")]
        before: Option<String>,
        /// Just after this member.
        #[arg(long)]
        after: Option<String>,
    },
    /// Take members out of a group (all of them without a list).
    #[command(alias = "delete")]
    Remove {
        /// The group.
        group: String,
        /// Members to take out.
        members: Vec<String>,
    },
}

fn kv_list(words: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    words
        .iter()
        .map(|w| key_value(w).ok_or_else(|| Exit::error(Exit::USAGE, format!("'{w}' is not key=value"))))
        .collect()
}

/// The node(s) a resource runs on now, from the live or offline CIB.
fn running_nodes(flags: &EditFlags, rsc: &str) -> anyhow::Result<Vec<String>> {
    let (cib, quorum) = load(flags)?;
    let t = crm::schedule(&cib, quorum, cib.execution_date.unwrap_or_else(now));
    Ok(edit::runs_on(&t.current, rsc))
}

fn single_node_of(flags: &EditFlags, rsc: &str, verb: &str) -> anyhow::Result<String> {
    let on = running_nodes(flags, rsc)?;
    match on.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Exit::error(Exit::INVALID_PARAM, format!("'{rsc}' runs nowhere; name the node: {verb} {rsc} NODE"))),
        many => Err(Exit::error(
            Exit::INVALID_PARAM,
            format!("'{rsc}' runs on {}; name the node: {verb} {rsc} NODE", many.join(", ")),
        )),
    }
}

fn no_lifetime(lifetime: &Option<String>) -> anyhow::Result<()> {
    match lifetime {
        Some(_) => Err(Exit::error(
            Exit::INVALID_PARAM,
            "field lifetime: expiring constraints need date expressions, which this cluster does not evaluate yet; \
             leave --lifetime out and run `crmctl resource clear` when done",
        )),
        None => Ok(()),
    }
}

pub(crate) fn run(args: ResourceArgs) -> anyhow::Result<ExitCode> {
    let flags = &args.flags;
    match args.command {
        ResourceCommand::List { rsc } => list(flags, rsc.as_deref()),
        ResourceCommand::Config { ids } => config(flags, &ids),
        ResourceCommand::Create {
            id,
            agent,
            words,
            group,
            before,
            after,
            disabled,
            no_default_ops,
            no_validate,
            ocf_root,
        } => {
            let w = parse_words(&words, true)?;
            let agent = resolve_agent(&agent, &ocf_root)?;
            let md = metadata(&agent, &ocf_root);
            let mut ops = w.ops.clone();
            if let Some(md) = &md {
                if !no_validate {
                    validate_params(md, &w.params)?;
                }
                if !no_default_ops {
                    ops.extend(default_ops(md, &w.ops));
                }
            }
            let placement = match (group, w.clone) {
                (Some(_), Some(_)) => {
                    return Err(Exit::error(Exit::USAGE, "--group and clone/promotable exclude each other"));
                }
                (Some(group), None) => Placement::Group {
                    group,
                    position: match (before, after) {
                        (Some(b), _) => Position::Before(b),
                        (_, Some(a)) => Position::After(a),
                        _ => Position::End,
                    },
                },
                (None, Some(CloneWords { id, meta, promotable })) => Placement::Clone { id, meta, promotable },
                (None, None) => Placement::TopLevel,
            };
            let spec = PrimitiveSpec {
                id: id.clone(),
                agent,
                params: w.params,
                ops,
                meta: w.meta,
                utilization: w.utilization,
                placement,
                disabled,
            };
            let goal = if disabled { Goal::Stopped(id.clone(), None) } else { Goal::Running(id.clone(), None) };
            mutate(flags, &format!("created {id}"), |c| edit::create_primitive(c, &spec), goal)
        }
        ResourceCommand::Update { id, words } => {
            let w = parse_words(&words, false)?;
            mutate(
                flags,
                &format!("updated {id}"),
                |c| edit::update_resource(c, &id, &w.params, &w.meta, &w.ops),
                Goal::Settled,
            )
        }
        ResourceCommand::Meta { id, pairs } => {
            let meta = kv_list(&pairs)?;
            mutate(flags, &format!("updated {id}"), |c| edit::update_resource(c, &id, &[], &meta, &[]), Goal::Settled)
        }
        ResourceCommand::Delete { ids, no_stop, yes } => delete(flags, &ids, no_stop, yes),
        ResourceCommand::Enable { ids } => {
            let goal = if ids.len() == 1 { Goal::Running(ids[0].clone(), None) } else { Goal::Settled };
            mutate(
                flags,
                &format!("enabled {}", ids.join(", ")),
                |c| {
                    let mut notes = Notes::new();
                    for id in &ids {
                        notes.extend(edit::set_target_role(c, id, None)?);
                    }
                    Ok(notes)
                },
                goal,
            )
        }
        ResourceCommand::Disable { ids } => {
            let goal = if ids.len() == 1 { Goal::Stopped(ids[0].clone(), None) } else { Goal::Settled };
            mutate(
                flags,
                &format!("disabled {}", ids.join(", ")),
                |c| {
                    let mut notes = Notes::new();
                    for id in &ids {
                        notes.extend(edit::set_target_role(c, id, Some(Role::Stopped))?);
                    }
                    Ok(notes)
                },
                goal,
            )
        }
        ResourceCommand::Move { id, node, promoted, lifetime, keep_constraint } => {
            no_lifetime(&lifetime)?;
            move_resource(flags, &id, node, promoted.then_some(Role::Promoted), keep_constraint)
        }
        ResourceCommand::Ban { id, node, promoted, lifetime } => {
            no_lifetime(&lifetime)?;
            let node = match node {
                Some(n) => n,
                None => single_node_of(flags, &id, "ban")?,
            };
            mutate(
                flags,
                &format!("banned {id} from {node}"),
                |c| edit::ban(c, &id, &node, promoted.then_some(Role::Promoted)),
                Goal::Stopped(id.clone(), Some(node.clone())),
            )
        }
        ResourceCommand::Clear { id, node } => mutate(
            flags,
            &format!("cleared moves and bans of {id}"),
            |c| edit::clear(c, &id, node.as_deref()),
            Goal::Settled,
        ),
        ResourceCommand::Manage { ids, monitor } => set_managed_all(flags, &ids, true, monitor),
        ResourceCommand::Unmanage { ids, monitor } => set_managed_all(flags, &ids, false, monitor),
        ResourceCommand::Restart { id } => {
            if flags.file.is_some() || flags.dry_run {
                return Err(Exit::error(
                    Exit::USAGE,
                    "restart acts on the live cluster; -f and --dry-run do not apply",
                ));
            }
            let step = step_flags(flags, Some(wait_duration(flags, Duration::from_secs(60))?));
            mutate(
                &step,
                &format!("restarting {id}: stopping"),
                |c| edit::set_target_role(c, &id, Some(Role::Stopped)),
                Goal::Stopped(id.clone(), None),
            )?;
            let later = EditFlags { if_version: None, ..step };
            mutate(
                &later,
                &format!("restarting {id}: starting"),
                |c| edit::set_target_role(c, &id, None),
                Goal::Running(id.clone(), None),
            )
        }
        ResourceCommand::Op { command: OpCommand::Add { id, action, pairs } } => {
            let op = OpSpec { action, attrs: kv_list(&pairs)? };
            mutate(flags, &format!("added an operation to {id}"), |c| edit::add_op(c, &id, &op), Goal::Settled)
        }
        ResourceCommand::Op { command: OpCommand::Remove { id, which, pairs } } => {
            let mut interval = None;
            for (k, v) in kv_list(&pairs)? {
                if k != "interval" {
                    return Err(Exit::error(Exit::USAGE, format!("'{k}=': only interval= selects an operation")));
                }
                interval = Some(v);
            }
            mutate(
                flags,
                &format!("removed operations of {id}"),
                |c| edit::remove_op(c, &id, &which, interval.as_deref()),
                Goal::Settled,
            )
        }
        ResourceCommand::Group { command: GroupCommand::Add { group, members, before, after } } => {
            let position = match (before, after) {
                (Some(b), _) => Position::Before(b),
                (_, Some(a)) => Position::After(a),
                _ => Position::End,
            };
            mutate(
                flags,
                &format!("grouped {} into {group}", members.join(", ")),
                |c| edit::group_add(c, &group, &members, &position),
                Goal::Settled,
            )
        }
        ResourceCommand::Group { command: GroupCommand::Remove { group, members } }
        | ResourceCommand::Ungroup { group, members } => mutate(
            flags,
            &format!(
                "took {} out of {group}",
                if members.is_empty() { "every member".to_string() } else { members.join(", ") }
            ),
            |c| edit::group_remove(c, &group, &members),
            Goal::Settled,
        ),
        ResourceCommand::Cleanup { words } => cleanup(flags, &words),
        ResourceCommand::Failcount { words } => failcount(flags, &words),
    }
}

/// The `--wait` duration, or `default` when not given.
fn wait_duration(flags: &EditFlags, default: Duration) -> anyhow::Result<Duration> {
    match &flags.wait {
        Some(w) => agents::parse_duration(w)
            .ok_or_else(|| Exit::error(Exit::USAGE, format!("--wait={w}: not a duration (use 30s, 5min, 1h)"))),
        None => Ok(default),
    }
}

/// The flags for a step of a composed command: wait as given (or `default`).
fn step_flags(flags: &EditFlags, wait: Option<Duration>) -> EditFlags {
    EditFlags { wait: wait.map(|d| format!("{}ms", d.as_millis())), ..flags.clone() }
}

/// Delete as one intent: stop what runs, wait for it, then delete (live cluster); offline,
/// with --dry-run or with --no-stop, delete at once.
fn delete(flags: &EditFlags, ids: &[String], no_stop: bool, yes: bool) -> anyhow::Result<ExitCode> {
    let remove = |c: &mut Configuration| {
        let mut notes = Notes::new();
        for id in ids {
            notes.extend(edit::delete_resource(c, id)?);
        }
        Ok(notes)
    };
    let what = format!("deleted {}", ids.join(", "));
    if flags.file.is_some() || flags.dry_run || (no_stop && yes) {
        return mutate(flags, &what, remove, Goal::Settled);
    }
    let mut running = Vec::new();
    for id in ids {
        if !running_nodes(flags, id)?.is_empty() {
            running.push(id.clone());
        }
    }
    if !running.is_empty() {
        let timeout = wait_duration(flags, Duration::from_secs(120))?;
        let stop_flags = step_flags(flags, Some(timeout));
        let goal = if running.len() == 1 { Goal::Stopped(running[0].clone(), None) } else { Goal::Settled };
        mutate(
            &stop_flags,
            &format!("stopping {} before deleting", running.join(", ")),
            |c| {
                let mut notes = Notes::new();
                for id in &running {
                    notes.extend(edit::set_target_role(c, id, Some(Role::Stopped))?);
                }
                Ok(notes)
            },
            goal,
        )
        .map_err(|e| e.context("not deleted: the stop did not complete; the resources stay configured"))?;
        for id in &running {
            if !running_nodes(flags, id)?.is_empty() {
                return Err(Exit::error(Exit::ERROR, format!("not deleted: {id} still runs")));
            }
        }
    }
    // --if-version applied to the first write; the stop changed the version since.
    let later = EditFlags { if_version: if running.is_empty() { flags.if_version } else { None }, ..flags.clone() };
    mutate(&later, &what, remove, Goal::Settled)
}

/// Move as an expiring intent: on the live cluster, prefer the node (or ban the current one),
/// wait until it arrives, then drop the constraint unless `keep` or unless dropping it would
/// send the resource back; when the move does not complete, the constraint is dropped too.
fn move_resource(
    flags: &EditFlags,
    id: &str,
    node: Option<String>,
    role: Option<Role>,
    keep: bool,
) -> anyhow::Result<ExitCode> {
    let (what, goal, node_or_from, prefer) = match node {
        Some(n) => (format!("moving {id} to {n}"), Goal::Running(id.to_string(), Some(n.clone())), n, true),
        None => {
            let from = single_node_of(flags, id, "move")?;
            (format!("moving {id} away from {from}"), Goal::Stopped(id.to_string(), Some(from.clone())), from, false)
        }
    };
    let place = |c: &mut Configuration| {
        if prefer { edit::move_to(c, id, &node_or_from, role) } else { edit::ban(c, id, &node_or_from, role) }
    };
    if keep || flags.file.is_some() || flags.dry_run {
        return mutate(flags, &what, place, goal);
    }
    let timeout = wait_duration(flags, Duration::from_secs(60))?;
    let moved = mutate(&step_flags(flags, Some(timeout)), &what, place, goal);
    let constraint = if prefer { edit::prefer_id(id) } else { edit::ban_id(id, &node_or_from) };
    let unflagged = EditFlags { wait: None, if_version: None, ..flags.clone() };
    match moved {
        Ok(_) => {
            // Would removing the constraint send it back? Ask the policy engine first.
            let (mut cib, quorum) = load(flags)?;
            let _ = edit::remove_constraint(&mut cib.config, &constraint);
            let t = crm::schedule(&cib, quorum, cib.execution_date.unwrap_or_else(now));
            // A group or clone is acted on through its members (and clone instances `rsc:N`).
            let ids = ids_under(&cib.config.resources, id);
            let back: Vec<&String> = t
                .summary
                .iter()
                .filter(|l| l.split_whitespace().nth(1).is_some_and(|r| ids.contains(r.split(':').next().unwrap_or(r))))
                .collect();
            if !back.is_empty() {
                println!(
                    "kept {constraint}: without it the cluster would act on {id} again ({}); remove it with `crmctl resource clear {id}`",
                    back.iter()
                        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                return Ok(ExitCode::SUCCESS);
            }
            mutate(
                &unflagged,
                &format!("the move of {id} is done; removed {constraint}"),
                |c| edit::remove_constraint(c, &constraint),
                Goal::Settled,
            )
        }
        Err(e) => {
            // The intent expires on failure too: do not leave a stale constraint behind.
            if let Err(e2) = mutate(
                &unflagged,
                &format!("removed {constraint}"),
                |c| edit::remove_constraint(c, &constraint),
                Goal::Settled,
            ) {
                eprintln!("could not remove {constraint}: {e2:#}");
            }
            Err(e.context(format!("the move of {id} did not complete")))
        }
    }
}

/// `resource manage|unmanage R...`: one change for all of them.
fn set_managed_all(flags: &EditFlags, ids: &[String], managed: bool, monitor: bool) -> anyhow::Result<ExitCode> {
    let what = format!("{} {}", if managed { "managing" } else { "unmanaged" }, ids.join(", "));
    mutate(
        flags,
        &what,
        |c| {
            let mut notes = Notes::new();
            for id in ids {
                notes.extend(edit::set_managed(c, id, managed, monitor)?);
            }
            Ok(notes)
        },
        Goal::Settled,
    )
}

/// `id` and every resource inside it (group members, a clone's child and its members).
fn ids_under(rs: &[crm::cib::Resource], id: &str) -> std::collections::BTreeSet<String> {
    fn all(r: &crm::cib::Resource, out: &mut std::collections::BTreeSet<String>) {
        out.insert(r.id.clone());
        match &r.kind {
            crm::cib::ResourceKind::Group { members } => members.iter().for_each(|m| all(m, out)),
            crm::cib::ResourceKind::Clone { child, .. } => all(child, out),
            crm::cib::ResourceKind::Primitive { .. } => {}
        }
    }
    fn find<'a>(rs: &'a [crm::cib::Resource], id: &str) -> Option<&'a crm::cib::Resource> {
        rs.iter().find_map(|r| {
            if r.id == id {
                return Some(r);
            }
            match &r.kind {
                crm::cib::ResourceKind::Group { members } => find(members, id),
                crm::cib::ResourceKind::Clone { child, .. } => find(std::slice::from_ref(child.as_ref()), id),
                crm::cib::ResourceKind::Primitive { .. } => None,
            }
        })
    }
    let mut out = std::collections::BTreeSet::from([id.to_string()]);
    if let Some(r) = find(rs, id) {
        all(r, &mut out);
    }
    out
}

/// `[R] [node=N]` (and `show`, skipped).
fn rsc_and_node(words: &[String]) -> anyhow::Result<(Option<String>, Option<String>)> {
    let (mut rsc, mut node) = (None, None);
    for w in words.iter().filter(|w| *w != "show") {
        match key_value(w) {
            Some((k, v)) if k == "node" => node = Some(v),
            Some((k, _)) => return Err(Exit::error(Exit::USAGE, format!("unknown option '{k}=': use node=N"))),
            None if rsc.is_none() => rsc = Some(w.clone()),
            None => return Err(Exit::error(Exit::USAGE, format!("unexpected word '{w}': give one resource"))),
        }
    }
    Ok((rsc, node))
}

fn primitives(r: &Resource, out: &mut Vec<String>) {
    match &r.kind {
        ResourceKind::Primitive { .. } => out.push(r.id.clone()),
        ResourceKind::Group { members } => members.iter().for_each(|m| primitives(m, out)),
        ResourceKind::Clone { child, .. } => primitives(child, out),
    }
}

fn cleanup(flags: &EditFlags, words: &[String]) -> anyhow::Result<ExitCode> {
    if flags.file.is_some() || flags.dry_run {
        return Err(Exit::error(Exit::USAGE, "cleanup acts on the live cluster; -f and --dry-run do not apply"));
    }
    let (rsc, node) = rsc_and_node(words)?;
    let (cib, _) = load(flags)?;
    let targets = match &rsc {
        Some(r) => {
            let found = cib.config.resources.iter().find_map(|top| {
                let mut ids = Vec::new();
                let mut all = Vec::new();
                primitives(top, &mut ids);
                collect_all(top, &mut all);
                all.contains(r).then(|| if &top.id == r || ids.len() > 1 { ids } else { vec![r.clone()] })
            });
            found.ok_or_else(|| Exit::error(Exit::NO_SUCH, format!("no resource named '{r}'")))?
        }
        None => {
            let mut ids = Vec::new();
            cib.config.resources.iter().for_each(|r| primitives(r, &mut ids));
            ids
        }
    };
    let before = histories(&cib, &targets, node.as_deref());
    for r in &targets {
        match crate::daemon::ask(&flags.run_dir, &Request::ResourceCleanup { rsc: r.clone(), node: node.clone() })? {
            Response::Done(what) => println!("cleaned up {r}: {what}"),
            _ => return Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
        }
    }
    let Some(w) = &flags.wait else { return Ok(ExitCode::SUCCESS) };
    let timeout =
        agents::parse_duration(w).ok_or_else(|| Exit::error(Exit::USAGE, format!("--wait={w}: not a duration")))?;
    // The executors forget the history on their own time: wait until every recorded history
    // of these resources was replaced, so the settling below is the one after the cleanup.
    let start = Instant::now();
    loop {
        let (now_cib, _) = load(flags)?;
        let after = histories(&now_cib, &targets, node.as_deref());
        if before.iter().all(|old| !after.contains(old)) {
            break;
        }
        if start.elapsed() >= timeout {
            return Err(Exit::error(Exit::TIMEOUT, "the cleanup did not reach the CIB in time"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(&flags.run_dir, timeout.saturating_sub(start.elapsed()), &Goal::Settled)
}

/// One resource's recorded history on one node: (node id, entry id, ops' ids and call ids).
type History = (String, String, Vec<(String, i64)>);

/// The recorded operation histories of `rscs` (instances included), one entry per node and
/// resource: (node id, history entry id, its ops' ids and call ids).
fn histories(cib: &Cib, rscs: &[String], node: Option<&str>) -> Vec<History> {
    let mut out = Vec::new();
    for ns in &cib.status {
        if node.is_some_and(|n| ns.uname.as_deref() != Some(n) && ns.id != n) {
            continue;
        }
        for lr in &ns.resources {
            if rscs.iter().any(|r| crm::replica::same_resource(&lr.id, r)) && !lr.ops.is_empty() {
                let ops = lr.ops.iter().map(|o| (o.id.clone(), o.call_id)).collect();
                out.push((ns.id.clone(), lr.id.clone(), ops));
            }
        }
    }
    out
}

fn collect_all(r: &Resource, out: &mut Vec<String>) {
    out.push(r.id.clone());
    match &r.kind {
        ResourceKind::Primitive { .. } => {}
        ResourceKind::Group { members } => members.iter().for_each(|m| collect_all(m, out)),
        ResourceKind::Clone { child, .. } => collect_all(child, out),
    }
}

fn failcount(flags: &EditFlags, words: &[String]) -> anyhow::Result<ExitCode> {
    let (rsc, node) = rsc_and_node(words)?;
    let (cib, _) = load(flags)?;
    let mut any = false;
    for ns in &cib.status {
        let name = ns.uname.clone().unwrap_or_else(|| ns.id.clone());
        if node.as_ref().is_some_and(|n| n != &name) {
            continue;
        }
        for p in ns.transient.iter().flat_map(|s| &s.pairs) {
            let Some(rest) = p.name.strip_prefix("fail-count-") else { continue };
            let (r, op) = rest.split_once('#').unwrap_or((rest, ""));
            if rsc.as_ref().is_some_and(|want| !crm::replica::same_resource(r, want)) {
                continue;
            }
            any = true;
            println!("{r}\t{op}\ton {name}:\t{}", p.value.as_deref().unwrap_or("0"));
        }
    }
    if !any {
        println!("no failures recorded");
    }
    Ok(ExitCode::SUCCESS)
}

fn view_json(v: &RscView) -> serde_json::Value {
    serde_json::json!({
        "id": v.id,
        "kind": v.kind,
        "agent": (v.kind == "primitive").then_some(&v.agent),
        "role": v.role.as_str(),
        "nodes": v.nodes,
        "failed": v.failed,
        "disabled": v.disabled,
        "managed": !v.unmanaged,
        "children": v.children.iter().map(view_json).collect::<Vec<_>>(),
    })
}

fn list(flags: &EditFlags, rsc: Option<&str>) -> anyhow::Result<ExitCode> {
    let (cib, quorum) = load(flags)?;
    let t = crm::schedule(&cib, quorum, cib.execution_date.unwrap_or_else(now));
    let resources = match rsc {
        Some(r) => vec![
            find_view(&t.current.resources, r)
                .cloned()
                .ok_or_else(|| Exit::error(Exit::NO_SUCH, format!("no resource named '{r}'")))?,
        ],
        None => t.current.resources.clone(),
    };
    if flags.output == Output::Json {
        let doc = serde_json::json!({
            "api_version": API_VERSION,
            "resources": resources.iter().map(view_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    if resources.is_empty() {
        println!("NO resources configured");
        return Ok(ExitCode::SUCCESS);
    }
    let text = crm::simulate::format_view("x", &crm::scheduler::ClusterView { nodes: Vec::new(), resources });
    // Only the resource lines (the view starts with an empty node list).
    for line in text.lines().skip_while(|l| !l.contains("Full List of Resources")).skip(1) {
        println!("{}", line.trim_start_matches("  "));
    }
    Ok(ExitCode::SUCCESS)
}

fn pairs_of(sets: &[crm::cib::NvSet]) -> Vec<(String, String)> {
    sets.iter()
        .filter(|s| s.rule.is_none())
        .flat_map(|s| &s.pairs)
        .map(|p| (edit::canonical_name(&p.name), p.value.clone().unwrap_or_default()))
        .collect()
}

fn pairs_text(sets: &[crm::cib::NvSet]) -> String {
    pairs_of(sets).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

fn agent_text(class: &str, provider: &Option<String>, agent: &str) -> String {
    match provider {
        Some(p) => format!("{class}:{p}:{agent}"),
        None => format!("{class}:{agent}"),
    }
}

/// An op's attributes as `k=v` words.
fn op_words(o: &crm::cib::OpConfig) -> Vec<String> {
    let mut w = vec![format!("interval={}", duration_text(o.interval_ms))];
    if let Some(t) = o.timeout_ms {
        w.push(format!("timeout={}", duration_text(t)));
    }
    if let Some(role) = o.role {
        w.push(format!("role={}", role.as_str()));
    }
    if let Some(f) = &o.on_fail {
        w.push(format!("on-fail={f}"));
    }
    if !o.enabled {
        w.push("enabled=false".into());
    }
    for p in &o.meta {
        w.push(format!("{}={}", p.name, p.value.as_deref().unwrap_or("")));
    }
    w
}

fn describe(r: &Resource, depth: usize, out: &mut String) {
    use std::fmt::Write as _;
    let pad = "  ".repeat(depth);
    match &r.kind {
        ResourceKind::Primitive { class, provider, agent } => {
            let _ = writeln!(out, "{pad}Resource: {} ({})", r.id, agent_text(class, provider, agent));
        }
        ResourceKind::Group { .. } => {
            let _ = writeln!(out, "{pad}Group: {}", r.id);
        }
        ResourceKind::Clone { .. } => {
            let _ = writeln!(out, "{pad}Clone: {}", r.id);
        }
    }
    if !r.params.is_empty() {
        let _ = writeln!(out, "{pad}  Attributes: {}", pairs_text(&r.params));
    }
    if !r.meta.is_empty() {
        let _ = writeln!(out, "{pad}  Meta Attributes: {}", pairs_text(&r.meta));
    }
    if !r.utilization.is_empty() {
        let _ = writeln!(out, "{pad}  Utilization: {}", pairs_text(&r.utilization));
    }
    if !r.ops.is_empty() {
        let _ = writeln!(out, "{pad}  Operations:");
        for o in &r.ops {
            let _ = writeln!(out, "{pad}    {} {} ({})", o.name, op_words(o).join(" "), o.id);
        }
    }
    match &r.kind {
        ResourceKind::Group { members } => members.iter().for_each(|m| describe(m, depth + 1, out)),
        ResourceKind::Clone { child, .. } => describe(child, depth + 1, out),
        ResourceKind::Primitive { .. } => {}
    }
}

fn resource_json(r: &Resource) -> serde_json::Value {
    let map = |sets: &[crm::cib::NvSet]| {
        pairs_of(sets).into_iter().map(|(k, v)| (k, v.into())).collect::<serde_json::Map<String, serde_json::Value>>()
    };
    let mut v = serde_json::json!({
        "id": r.id,
        "params": map(&r.params),
        "meta": map(&r.meta),
        "utilization": map(&r.utilization),
        "ops": r.ops.iter().map(|o| serde_json::json!({
            "id": o.id,
            "name": o.name,
            "interval_ms": o.interval_ms,
            "timeout_ms": o.timeout_ms,
            "role": o.role.map(|x| x.as_str()),
            "on_fail": o.on_fail,
            "enabled": o.enabled,
        })).collect::<Vec<_>>(),
    });
    match &r.kind {
        ResourceKind::Primitive { class, provider, agent } => {
            v["kind"] = "primitive".into();
            v["agent"] = agent_text(class, provider, agent).into();
        }
        ResourceKind::Group { members } => {
            v["kind"] = "group".into();
            v["members"] = members.iter().map(resource_json).collect::<Vec<_>>().into();
        }
        ResourceKind::Clone { child, legacy_promotable } => {
            v["kind"] = "clone".into();
            let promotable = *legacy_promotable
                || pairs_of(&r.meta)
                    .iter()
                    .any(|(k, v)| k == "promotable" && matches!(v.as_str(), "true" | "1" | "yes"));
            v["promotable"] = promotable.into();
            v["child"] = resource_json(child);
        }
    }
    v
}

/// The crmctl commands that recreate `r` (a top-level resource).
fn resource_cmds(r: &Resource, out: &mut Vec<String>) {
    fn primitive(p: &Resource, tail: &[String]) -> Option<String> {
        let ResourceKind::Primitive { class, provider, agent } = &p.kind else { return None };
        let mut w = vec!["crmctl".to_string(), "resource".into(), "create".into(), p.id.clone()];
        w.push(agent_text(class, provider, agent));
        w.extend(pairs_of(&p.params).into_iter().map(|(k, v)| format!("{k}={v}")));
        for o in &p.ops {
            w.push("op".into());
            w.push(o.name.clone());
            w.extend(op_words(o));
        }
        let meta = pairs_of(&p.meta);
        if !meta.is_empty() {
            w.push("meta".into());
            w.extend(meta.into_iter().map(|(k, v)| format!("{k}={v}")));
        }
        let util = pairs_of(&p.utilization);
        if !util.is_empty() {
            w.push("utilization".into());
            w.extend(util.into_iter().map(|(k, v)| format!("{k}={v}")));
        }
        w.extend(tail.iter().cloned());
        w.push("--no-default-ops".into());
        Some(w.iter().map(|x| shell_word(x)).collect::<Vec<_>>().join(" "))
    }
    match &r.kind {
        ResourceKind::Primitive { .. } => out.extend(primitive(r, &[])),
        ResourceKind::Group { members } => {
            for m in members {
                out.extend(primitive(m, &["--group".into(), r.id.clone()]));
            }
            let meta = pairs_of(&r.meta);
            if !meta.is_empty() {
                let kv: Vec<String> = meta.into_iter().map(|(k, v)| shell_word(&format!("{k}={v}"))).collect();
                out.push(format!("crmctl resource meta {} {}", shell_word(&r.id), kv.join(" ")));
            }
        }
        ResourceKind::Clone { child, legacy_promotable } => {
            let mut meta = pairs_of(&r.meta);
            let promotable = *legacy_promotable
                || meta.iter().any(|(k, v)| k == "promotable" && matches!(v.as_str(), "true" | "1" | "yes"));
            meta.retain(|(k, _)| k != "promotable");
            let mut tail = vec![if promotable { "promotable" } else { "clone" }.to_string(), r.id.clone()];
            tail.extend(meta.into_iter().map(|(k, v)| format!("{k}={v}")));
            match &child.kind {
                ResourceKind::Primitive { .. } => out.extend(primitive(child, &tail)),
                _ => out.push(format!("# clone {} of group {}: not expressible as one create command", r.id, child.id)),
            }
        }
    }
}

fn config(flags: &EditFlags, ids: &[String]) -> anyhow::Result<ExitCode> {
    let (cib, _) = load(flags)?;
    let mut picked: Vec<&Resource> = Vec::new();
    if ids.is_empty() {
        picked.extend(cib.config.resources.iter());
    }
    for id in ids {
        let found = cib.config.resources.iter().find_map(|top| find_in(top, id));
        picked.push(found.ok_or_else(|| Exit::error(Exit::NO_SUCH, format!("no resource named '{id}'")))?);
    }
    match flags.output {
        Output::Text => {
            let mut out = String::new();
            picked.iter().for_each(|r| describe(r, 0, &mut out));
            print!("{out}");
        }
        Output::Json => {
            let doc = serde_json::json!({
                "api_version": API_VERSION,
                "resources": picked.iter().map(|r| resource_json(r)).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Cmd => {
            let mut out = Vec::new();
            picked.iter().for_each(|r| resource_cmds(r, &mut out));
            for line in out {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn find_in<'a>(r: &'a Resource, id: &str) -> Option<&'a Resource> {
    if r.id == id {
        return Some(r);
    }
    match &r.kind {
        ResourceKind::Primitive { .. } => None,
        ResourceKind::Group { members } => members.iter().find_map(|m| find_in(m, id)),
        ResourceKind::Clone { child, .. } => find_in(child, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn bare_pairs_are_params_and_keywords_switch_the_set() {
        let w = parse_words(
            &words("ip=10.0.0.1 cidr_netmask=24 op monitor interval=10s timeout=20s op start timeout=30s meta target-role=Stopped utilization cpu=2"),
            true,
        )
        .expect("parses");
        assert_eq!(w.params, kv(&[("ip", "10.0.0.1"), ("cidr_netmask", "24")]));
        assert_eq!(w.ops.len(), 2);
        assert_eq!(w.ops[0].action, "monitor");
        assert_eq!(w.ops[0].attrs, kv(&[("interval", "10s"), ("timeout", "20s")]));
        assert_eq!(w.ops[1].attrs, kv(&[("timeout", "30s")]));
        assert_eq!(w.meta, kv(&[("target-role", "Stopped")]));
        assert_eq!(w.utilization, kv(&[("cpu", "2")]));
        assert_eq!(w.clone, None);
    }

    #[test]
    fn clone_and_promotable_take_an_optional_id_and_their_own_meta() {
        let w = parse_words(&words("a=1 clone web-set clone-max=2"), true).expect("parses");
        assert_eq!(
            w.clone,
            Some(CloneWords { id: Some("web-set".into()), meta: kv(&[("clone-max", "2")]), promotable: false })
        );
        let w = parse_words(&words("promotable promoted-max=1 meta m=1"), true).expect("parses");
        assert_eq!(w.clone, Some(CloneWords { id: None, meta: kv(&[("promoted-max", "1")]), promotable: true }));
        assert_eq!(w.meta, kv(&[("m", "1")]));
        assert!(parse_words(&words("clone"), false).is_err(), "no clone on update");
    }

    #[test]
    fn empty_values_unset_and_stray_words_are_usage_errors() {
        let w = parse_words(&words("ip= meta target-role="), false).expect("parses");
        assert_eq!(w.params, kv(&[("ip", "")]));
        assert_eq!(w.meta, kv(&[("target-role", "")]));
        for bad in ["op", "op interval=5s", "monitor", "=x", "clone a clone b"] {
            let e = parse_words(&words(bad), true).unwrap_err();
            let code = e.downcast_ref::<Exit>().map(|x| x.code);
            assert_eq!(code, Some(Exit::USAGE), "{bad}: {e}");
        }
    }

    #[test]
    fn cleanup_and_failcount_take_a_resource_and_node_equals() {
        assert_eq!(rsc_and_node(&words("show d1 node=n2")).expect("ok"), (Some("d1".into()), Some("n2".into())));
        assert_eq!(rsc_and_node(&[]).expect("ok"), (None, None));
        assert!(rsc_and_node(&words("d1 d2")).is_err());
        assert!(rsc_and_node(&words("d1 host=x")).is_err());
    }

    #[test]
    fn full_agent_names_resolve_without_the_agent_installed() {
        let root = Path::new("/nonexistent");
        let a = resolve_agent("ocf:acme:Thing", root).expect("full name");
        assert_eq!((a.class.as_str(), a.provider.as_deref(), a.agent.as_str()), ("ocf", Some("acme"), "Thing"));
        assert_eq!(resolve_agent("systemd:nginx", root).expect("systemd").agent, "nginx");
        let e = resolve_agent("Thing", root).unwrap_err();
        assert!(format!("{e:#}").contains("class:provider:type"), "{e:#}");
    }
}
