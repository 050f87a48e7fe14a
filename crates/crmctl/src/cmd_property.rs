//! `crmctl property set|unset|config`: cluster options in `crm_config`. Mutations run through
//! [`crate::cmd_resource::mutate`].

use std::process::ExitCode;

use clap::{Args, Subcommand};
use crm::edit::{self, Goal};

use crate::cmd_resource::{API_VERSION, EditFlags, Output, key_value, load, mutate, shell_word};
use crate::exit::Exit;

/// `crmctl property`.
#[derive(Debug, Args)]
pub(crate) struct PropertyArgs {
    #[command(subcommand)]
    command: Option<PropertyCommand>,
    #[command(flatten)]
    flags: EditFlags,
}

#[derive(Debug, Subcommand)]
enum PropertyCommand {
    /// Show the properties that are set (with --all, also every known one that is not).
    #[command(alias = "list")]
    Config {
        /// Also list every known property that is not set.
        #[arg(long)]
        all: bool,
    },
    /// Set properties: `set k=v…` (old spellings such as stonith-enabled are accepted).
    Set {
        /// `name=value` pairs.
        #[arg(value_name = "K=V", required = true)]
        pairs: Vec<String>,
        /// Accept property names this cluster does not know.
        #[arg(long)]
        force: bool,
    },
    /// Unset properties (they return to their defaults).
    #[command(alias = "delete")]
    Unset {
        /// Property names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub(crate) fn run(args: PropertyArgs) -> anyhow::Result<ExitCode> {
    let flags = &args.flags;
    match args.command.unwrap_or(PropertyCommand::Config { all: false }) {
        PropertyCommand::Config { all } => {
            let (cib, _) = load(flags)?;
            let plain: Vec<(String, String)> = cib
                .config
                .properties
                .iter()
                .filter(|s| s.rule.is_none())
                .flat_map(|s| &s.pairs)
                .map(|p| (edit::canonical_name(&p.name), p.value.clone().unwrap_or_default()))
                .collect();
            match flags.output {
                Output::Json => {
                    let props: serde_json::Map<String, serde_json::Value> =
                        plain.into_iter().map(|(k, v)| (k, v.into())).collect();
                    let doc = serde_json::json!({ "api_version": API_VERSION, "properties": props });
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                    return Ok(ExitCode::SUCCESS);
                }
                Output::Cmd => {
                    if !plain.is_empty() {
                        let kv: Vec<String> = plain.iter().map(|(k, v)| shell_word(&format!("{k}={v}"))).collect();
                        println!("crmctl property set {}", kv.join(" "));
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Output::Text => {}
            }
            let mut set = Vec::new();
            for s in &cib.config.properties {
                for p in &s.pairs {
                    let name = edit::canonical_name(&p.name);
                    let scope = if s.rule.is_some() { format!(" (in {}, with a rule)", s.id) } else { String::new() };
                    println!("{name}={}{scope}", p.value.as_deref().unwrap_or(""));
                    set.push(name);
                }
            }
            if all {
                for name in edit::known_properties().filter(|n| !set.iter().any(|s| s == n)) {
                    println!("{name} (not set: default)");
                }
            } else if set.is_empty() {
                println!("no cluster property is set (every one has its default)");
            }
            Ok(ExitCode::SUCCESS)
        }
        PropertyCommand::Set { pairs, force } => {
            let kv: Vec<(String, String)> = pairs
                .iter()
                .map(|w| key_value(w).ok_or_else(|| Exit::error(Exit::USAGE, format!("'{w}' is not name=value"))))
                .collect::<anyhow::Result<_>>()?;
            let what = format!("set {}", kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
            mutate(flags, &what, |c| edit::set_properties(c, &kv, force), Goal::Settled)
        }
        PropertyCommand::Unset { names } => {
            mutate(flags, &format!("unset {}", names.join(" ")), |c| edit::unset_properties(c, &names), Goal::Settled)
        }
    }
}
