//! `crmctl`: the one admin CLI. Parses arguments and calls one library function per command;
//! each command area lives in its own module (`cmd_<area>.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_agent;
mod cmd_arbiter;
mod cmd_config;
mod cmd_constraint;
mod cmd_crm;
mod cmd_membership;
mod cmd_node;
mod cmd_property;
mod cmd_quorum;
mod cmd_resource;
mod cmd_status;
mod cmd_stonith;
mod cmd_volume;
mod daemon;
mod exit;

/// Manage a cluster: resources, constraints, nodes, quorum, fencing and volumes.
#[derive(Debug, Parser)]
#[command(name = "crmctl", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of this build and the wire protocol it speaks.
    Version,
    #[command(flatten)]
    Crm(cmd_crm::CrmCommand),
    /// Resource agents: list, describe, run an action by hand (no daemon needed).
    Agent(cmd_agent::AgentArgs),
    /// Fencing devices: describe agents, try a device by hand.
    #[command(name = "stonith", alias = "fence")]
    Stonith(cmd_stonith::StonithArgs),
    /// Replicated volumes (blockrepl).
    Volume(cmd_volume::VolumeArgs),
    /// Cluster membership: views, links, counters.
    Membership(cmd_membership::MembershipArgs),
    /// Quorum: votes, expected votes, the arbiter.
    Quorum(cmd_quorum::QuorumArgs),
    /// The arbiter host (run there): set up qnetd, hand out join codes, status.
    Arbiter(cmd_arbiter::ArbiterArgs),
    /// The cluster's configuration (CIB), replicated on every node.
    Config(cmd_config::ConfigArgs),
    /// The cluster at a glance: quorum, DC, nodes, resources, what the policy engine would do.
    Status(cmd_status::StatusArgs),
    /// Resources: create, update, delete, enable/disable, move/ban/clear, cleanup, list.
    Resource(cmd_resource::ResourceArgs),
    /// Nodes: standby, maintenance, list.
    Node(cmd_node::NodeArgs),
    /// Constraints: location, order, colocation (also over resource sets), delete, list.
    Constraint(cmd_constraint::ConstraintArgs),
    /// Cluster properties: set, unset, config.
    Property(cmd_property::PropertyArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("crmctl {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Crm(cmd) => cmd_crm::run(cmd),
        Command::Agent(args) => cmd_agent::run(args),
        Command::Stonith(args) => cmd_stonith::run(args),
        Command::Volume(args) => cmd_volume::run(args),
        Command::Membership(args) => cmd_membership::run(args),
        Command::Quorum(args) => cmd_quorum::run(args),
        Command::Arbiter(args) => cmd_arbiter::run(args),
        Command::Config(args) => cmd_config::run(args),
        Command::Status(args) => cmd_status::run(args),
        Command::Resource(args) => cmd_resource::run(args),
        Command::Node(args) => cmd_node::run(args),
        Command::Constraint(args) => cmd_constraint::run(args),
        Command::Property(args) => cmd_property::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("crmctl: {err:#}");
            exit::code_for(&err)
        }
    }
}
