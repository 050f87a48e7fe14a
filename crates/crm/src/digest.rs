//! Operation digests: hashes of the parameters an operation ran with, compatible with the
//! `op-digest`, `op-restart-digest` and `op-secure-digest` attributes Pacemaker records on
//! every `lrm_rsc_op`.
//!
//! When an operation's result is recorded, a hash of the parameters the agent was called with
//! is recorded with it. The scheduler hashes the parameters the resource has *now* and
//! compares: a different hash means the resource's definition changed since the operation
//! ran. For the record of the operation that started a resource, that means the resource must
//! be restarted to take the new definition (stopped with the old one, started with the new
//! one); for a recurring monitor it means the monitor must be issued again with its new
//! parameters. A record without a digest tells nothing and is never taken as a change.
//!
//! # What is hashed
//!
//! The parameters of an action are, by precedence:
//!
//! 1. the operation's own `instance_attributes` (parameters passed to that operation only);
//! 2. the resource's `instance_attributes`, then those of the group and clone that contain it
//!    (a child's own value wins), sets ordered by score and limited by their rules;
//! 3. for a recurring operation only, `CRM_meta_timeout`: the operation's timeout in
//!    milliseconds (from the `op`, else `op_defaults`, else 20 s), so that a changed monitor
//!    timeout re-issues the monitor. One-off operations carry no meta attribute in the hash.
//!
//! They are written as one XML element, attributes sorted by name and values escaped as XML
//! attribute values: `" <parameters a=\"1\" b=\"2\"/>\n"` (leading space and trailing newline
//! included), and hashed with MD5, written as 32 lower-case hex digits.
//!
//! The *restart digest* hashes only the parameters named in the record's `op-force-restart`
//! list (those an agent cannot take by reloading). The *secure digest* leaves out the
//! parameters named in `op-secure-params` (private values such as passwords), every
//! `CRM_meta_` attribute, and for fencing devices the fencer's own `pcmk_` options: it lets a
//! configuration whose private values were masked (`****`, as report tools write them) still
//! be compared.
//!
//! MD5 is used because the recorded values are MD5 hashes; it detects changes and is not a
//! security measure.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use crate::cib::{Cib, LrmOp, NvSet};
use crate::scheduler::rules::RuleCtx;
use crate::scheduler::unpack::World;

/// Parameters of an action, by name.
pub type Params = BTreeMap<String, String>;

/// The timeout of a recurring operation that neither the operation nor `op_defaults` sets.
pub const DEFAULT_TIMEOUT_MS: u64 = 20_000;

/// The value report tools write in place of a private parameter's value.
pub const MASKED_VALUE: &str = "****";

/// The text that is hashed: `" <parameters name=\"value\" .../>\n"`, names sorted.
pub fn parameters_text(params: &Params) -> String {
    let mut out = String::from(" <parameters");
    for (k, v) in params {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        escape_into(v, &mut out);
        out.push('"');
    }
    out.push_str("/>\n");
    out
}

fn escape_into(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

/// The digest of a parameter set (`op-digest` when `params` are an action's parameters).
pub fn digest(params: &Params) -> String {
    let hash = Md5::digest(parameters_text(params).as_bytes());
    let mut out = String::with_capacity(32);
    for b in hash {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The restart digest (`op-restart-digest`): only the parameters named in `force_restart`
/// (a space-separated list, as `op-force-restart` records it).
pub fn restart_digest(params: &Params, force_restart: &str) -> String {
    let names: Vec<&str> = force_restart.split_whitespace().collect();
    let kept: Params = params.iter().filter(|(k, _)| names.contains(&k.as_str())).map(clone_pair).collect();
    digest(&kept)
}

/// The secure digest (`op-secure-digest`): without the parameters named in `secure_params`
/// (space-separated, as `op-secure-params` records it), without meta attributes and, for a
/// fencing device, without the fencer's `pcmk_` options.
pub fn secure_digest(params: &Params, secure_params: &str, fencing: bool) -> String {
    let names: Vec<&str> = secure_params.split_whitespace().collect();
    let kept: Params = params
        .iter()
        .filter(|(k, _)| {
            let private = names.contains(&k.as_str());
            let fencer_option = fencing && k.starts_with("pcmk_");
            !(private || fencer_option || k.starts_with("CRM_meta_"))
        })
        .map(clone_pair)
        .collect();
    digest(&kept)
}

fn clone_pair((k, v): (&String, &String)) -> (String, String) {
    (k.clone(), v.clone())
}

/// How a recorded operation compares with the resource's definition now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// The record carries no digest: nothing is known, nothing is taken as changed.
    NotRecorded,
    /// The parameters are the ones the operation ran with.
    Unchanged,
    /// The parameters changed since the operation ran.
    Changed {
        /// Only parameters the agent can take by reloading changed: the record names the
        /// parameters that force a restart (`op-force-restart`) and their digest is the same.
        reloadable: bool,
    },
}

impl DigestCheck {
    /// Whether the definition changed.
    pub fn changed(self) -> bool {
        matches!(self, DigestCheck::Changed { .. })
    }
}

/// Compares a recorded operation with `params`, the parameters the same action would have
/// now ([`action_parameters`]). `fencing`: the resource is a fencing device.
///
/// When the main digest differs only because private parameters are masked in the
/// configuration (every one of them that is set reads [`MASKED_VALUE`]), the recorded secure
/// digest decides.
pub fn check(op: &LrmOp, params: &Params, fencing: bool) -> DigestCheck {
    let Some(recorded) = op.attr("op-digest") else {
        return DigestCheck::NotRecorded;
    };
    if recorded == digest(params) {
        return DigestCheck::Unchanged;
    }
    if let (Some(secure), Some(names)) = (op.attr("op-secure-digest"), op.attr("op-secure-params")) {
        let mut private = names.split_whitespace().filter_map(|n| params.get(n)).peekable();
        let masked = private.peek().is_some() && private.all(|v| v == MASKED_VALUE);
        if masked && secure == secure_digest(params, names, fencing) {
            return DigestCheck::Unchanged;
        }
    }
    let reloadable = match (op.attr("op-restart-digest"), op.attr("op-force-restart")) {
        (Some(recorded), Some(names)) => recorded == restart_digest(params, names),
        _ => false,
    };
    DigestCheck::Changed { reloadable }
}

/// Flattens parameter sets (higher score first, then document order; the first value of a
/// name wins) into `out` without overriding names already there. Names are kept as written.
pub(crate) fn flatten_params(sets: &[NvSet], ctx: &RuleCtx<'_>, out: &mut Params) {
    let mut order: Vec<&NvSet> = sets.iter().collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.score.unwrap_or(crate::Score::ZERO)));
    for s in order {
        if let Some(r) = &s.rule
            && !crate::scheduler::rules::eval(r, ctx)
        {
            continue;
        }
        for p in &s.pairs {
            if let Some(v) = &p.value {
                out.entry(p.name.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

/// Computes action parameters and digests for many actions of one CIB (the CIB is unpacked
/// once).
pub struct Calculator {
    world: World,
}

impl Calculator {
    /// Unpacks `cib` for computing.
    pub fn new(cib: &Cib) -> Calculator {
        Calculator { world: World::build(cib, None, 0) }
    }

    /// See [`action_parameters`].
    pub fn parameters(&self, rsc: &str, node: Option<&str>, action: &str, interval_ms: u64) -> Option<Params> {
        let w = &self.world;
        let leaf = w.primitive_named(rsc)?;
        let n = node.and_then(|name| w.nodes.iter().position(|x| x.name == name));
        Some(w.action_params(leaf, n, action, interval_ms))
    }

    /// See [`action_digest`].
    pub fn digest(&self, rsc: &str, node: Option<&str>, action: &str, interval_ms: u64) -> Option<String> {
        self.parameters(rsc, node, action, interval_ms).map(|p| digest(&p))
    }

    /// Whether `rsc` is a fencing device (its secure digest leaves out the fencer's options).
    pub fn is_fencing(&self, rsc: &str) -> bool {
        self.world.primitive_named(rsc).is_some_and(|l| self.world.rscs[l].class == "stonith")
    }
}

/// The parameters `action` (with `interval_ms`, 0 for one-off actions) of resource `rsc`
/// runs with on node `node` (rules in parameter sets are evaluated for that node; `None`:
/// rules on node attributes do not match). `rsc` is a primitive's id, or a clone instance's
/// (`rsc:N`). A reload (`reload-agent`) has the parameters of a start. `None` when no such
/// primitive is configured.
pub fn action_parameters(cib: &Cib, rsc: &str, node: Option<&str>, action: &str, interval_ms: u64) -> Option<Params> {
    Calculator::new(cib).parameters(rsc, node, action, interval_ms)
}

/// The digest Pacemaker would record for `action` of `rsc` on `node` now: what an executor
/// records as `op-digest` with the result ([`crate::replica::OpRecord::op_digest`]).
pub fn action_digest(cib: &Cib, rsc: &str, node: Option<&str>, action: &str, interval_ms: u64) -> Option<String> {
    action_parameters(cib, rsc, node, action, interval_ms).map(|p| digest(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn empty_parameters_hash_like_pacemaker() {
        assert_eq!(parameters_text(&Params::new()), " <parameters/>\n");
        assert_eq!(digest(&Params::new()), "f2317cad3d54cec5d7d7aa7d0bf35cf8");
    }

    #[test]
    fn names_are_sorted_and_values_escaped() {
        let p = params(&[("b", "x\"<&>"), ("a", "1")]);
        assert_eq!(parameters_text(&p), " <parameters a=\"1\" b=\"x&quot;&lt;&amp;&gt;\"/>\n");
    }

    #[test]
    fn restart_digest_keeps_only_the_named_parameters() {
        let p = params(&[("state", "/x"), ("fake", "1")]);
        assert_eq!(restart_digest(&p, " state "), digest(&params(&[("state", "/x")])));
        assert_eq!(restart_digest(&p, " dummy "), digest(&Params::new()));
    }

    #[test]
    fn secure_digest_drops_private_meta_and_fencer_options() {
        let p = params(&[("passwd", "s"), ("ip", "1"), ("pcmk_host_list", "a"), ("CRM_meta_timeout", "20000")]);
        assert_eq!(secure_digest(&p, " passwd ", true), digest(&params(&[("ip", "1")])));
        assert_eq!(secure_digest(&p, " passwd ", false), digest(&params(&[("ip", "1"), ("pcmk_host_list", "a")])));
    }
}
