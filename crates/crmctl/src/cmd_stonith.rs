//! `crmctl stonith` (alias `fence`): the fencing commands that work without the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fencing::{Action, Done, Outcome, Params};

use crate::exit::Exit;

/// Fencing devices and agents.
#[derive(Debug, Args)]
pub(crate) struct StonithArgs {
    #[command(subcommand)]
    command: StonithCommand,
}

#[derive(Debug, Subcommand)]
enum StonithCommand {
    /// Print an agent's parameters and actions (native: ipmi, libvirt, ec2; or any fence_* script).
    Describe {
        /// Agent type.
        agent: String,
        /// Print the fence-agents metadata XML instead of text.
        #[arg(long)]
        xml: bool,
    },
    /// Try a device by hand, without the daemon, and print how long the action took.
    ///
    /// DEVICE-CONFIG is key=value words (agent=ipmi ip=10.0.0.5 username=admin ...), read on
    /// top of --config FILE (key=value lines, like fence-agents' stdin: keep passwords there,
    /// not on the command line). The last word is the action: status, monitor, list,
    /// metadata, or (with --yes) off, on, reboot.
    Test {
        /// File of key=value lines (`#` comments); words on the command line override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Node to act on: mapped to plugs through pcmk_host_map (else the name is the plug).
        #[arg(long, value_name = "NODE")]
        target: Option<String>,
        /// Overall time for the action, retries included (e.g. 20s, 500ms).
        #[arg(long, value_name = "DUR")]
        timeout: Option<String>,
        /// Retries after a retryable failure.
        #[arg(long)]
        retries: Option<u32>,
        /// Confirm a power change (off, on, reboot).
        #[arg(long)]
        yes: bool,
        /// DEVICE-CONFIG words followed by the action.
        #[arg(required = true, value_name = "DEVICE-CONFIG... ACTION")]
        words: Vec<String>,
    },
}

pub(crate) fn run(args: StonithArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StonithCommand::Describe { agent, xml } => {
            let meta = fencing::describe(&agent, Duration::from_secs(20))
                .map_err(|e| Exit::error(Exit::NO_SUCH, e.to_string()))?;
            print!("{}", if xml { meta.to_xml() } else { meta.to_text() });
            Ok(ExitCode::SUCCESS)
        }
        StonithCommand::Test {
            config,
            target,
            timeout,
            retries,
            yes,
            words,
        } => test(config, target, timeout, retries, yes, words),
    }
}

fn test(
    config: Option<PathBuf>,
    target: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    yes: bool,
    mut words: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let action_word = words.pop().unwrap_or_default();
    let action = match Action::parse(&action_word) {
        Some(a) if !action_word.contains('=') => a,
        _ => {
            return Err(Exit::error(
                Exit::USAGE,
                format!(
                    "the last word must be the action (status, monitor, list, metadata, off, on, reboot), not `{action_word}`"
                ),
            ));
        }
    };
    if action.is_power_change() && !yes {
        return Err(Exit::error(
            Exit::UNSAFE,
            format!("`{action}` changes power: add --yes to confirm"),
        ));
    }
    let mut params = match &config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .map_err(|e| Exit::error(Exit::NO_INPUT, format!("{e:#}")))?;
            Params::from_lines(&text)
                .map_err(|e| Exit::error(Exit::INVALID_PARAM, e.to_string()))?
        }
        None => Params::default(),
    };
    for w in &words {
        if w.split_once('=')
            .is_some_and(|(k, _)| fencing::is_secret_key(k))
        {
            eprintln!(
                "crmctl: note: secrets on the command line are visible to other users (ps); prefer --config FILE (mode 0600)"
            );
        }
        let (k, v) = w.split_once('=').ok_or_else(|| {
            Exit::error(
                Exit::USAGE,
                format!("`{w}` is not key=value; the action goes last"),
            )
        })?;
        params
            .set(k, v)
            .map_err(|e| Exit::error(Exit::INVALID_PARAM, e.to_string()))?;
    }
    let timeout = timeout
        .map(|t| {
            fencing::parse_duration(&t).ok_or_else(|| {
                Exit::error(
                    Exit::INVALID_PARAM,
                    format!("--timeout `{t}` is not a duration (e.g. 20s)"),
                )
            })
        })
        .transpose()?;
    let runs = fencing::run_by_hand(&params, action, target.as_deref(), timeout, retries)
        .map_err(|e| Exit::error(Exit::CONFIG, e.to_string()))?;
    let agent = params.get(&["agent"]).unwrap_or("?");
    let mut code = ExitCode::SUCCESS;
    for run in &runs {
        let r = &run.report;
        let what = match &r.outcome {
            Outcome::Done(Done::Status(p)) => format!("power {p}"),
            Outcome::Done(Done::List(plugs)) => {
                let mut s = format!("{} plugs", plugs.len());
                for p in plugs {
                    s.push_str(&format!(
                        "\n  {}{}{}",
                        p.id,
                        p.alias
                            .as_ref()
                            .map(|a| format!(" ({a})"))
                            .unwrap_or_default(),
                        p.power.map(|s| format!(": {s}")).unwrap_or_default()
                    ));
                }
                s
            }
            Outcome::Done(Done::Metadata(m)) => m.to_text(),
            Outcome::Done(Done::Rebooted { on_error: Some(e) }) => {
                format!("confirmed off; power on failed: {e}")
            }
            Outcome::Done(Done::Off) => "confirmed off".to_owned(),
            Outcome::Done(_) => "done".to_owned(),
            Outcome::Failed(e) => format!("FAILED: {e}"),
            Outcome::Unknown(e) => format!("UNKNOWN (not confirmed): {e}"),
        };
        println!(
            "{agent} {action}{}: {} in {:.3} s ({} attempt{}): {what}",
            run.plug
                .as_deref()
                .map(|p| format!(" plug {p}"))
                .unwrap_or_default(),
            r.outcome.kind(),
            r.elapsed.as_secs_f64(),
            r.attempts,
            if r.attempts == 1 { "" } else { "s" },
        );
        if let Some(e) = r.outcome.error() {
            code = ExitCode::from(match e {
                fencing::AgentError::Timeout { .. } => Exit::TIMEOUT,
                fencing::AgentError::Config { .. } => Exit::CONFIG,
                fencing::AgentError::Unreachable { .. } => Exit::NOT_CONNECTED,
                fencing::AgentError::NoSuchPlug { .. } => Exit::NO_SUCH,
                _ => Exit::ERROR,
            });
        }
    }
    Ok(code)
}
