//! Rule evaluation against node attributes.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::cib::{Expr, Rule};

/// Name/value attributes.
pub(crate) type Attrs = BTreeMap<String, String>;

/// What a rule is evaluated against.
pub(crate) struct RuleCtx<'a> {
    /// Node name, when evaluating for a node.
    pub(crate) node: Option<&'a str>,
    /// Node attributes (with `#uname`, `#id`, ...).
    pub(crate) attrs: &'a BTreeMap<String, String>,
    /// The resource's agent (standard, provider, type), when evaluating resource defaults.
    pub(crate) rsc: Option<(&'a str, Option<&'a str>, &'a str)>,
    /// The operation (name, interval in ms), when evaluating operation defaults.
    pub(crate) op: Option<(&'a str, u64)>,
    /// The resource's parameters and meta attributes, when evaluating a location rule for
    /// it (`value-source="param"` or `"meta"` compares with these).
    pub(crate) rsc_attrs: Option<(&'a Attrs, &'a Attrs)>,
}

impl<'a> RuleCtx<'a> {
    /// A context with node attributes only.
    pub(crate) fn attrs(node: Option<&'a str>, attrs: &'a BTreeMap<String, String>) -> Self {
        RuleCtx { node, attrs, rsc: None, op: None, rsc_attrs: None }
    }
}

fn compare(a: &str, b: &str, ty: Option<&str>) -> Option<Ordering> {
    let ty = ty.map(str::to_ascii_lowercase);
    match ty.as_deref() {
        Some("integer") => {
            let x = a.trim().parse::<i64>().ok().or_else(|| a.trim().parse::<f64>().ok().map(|f| f as i64))?;
            let y = b.trim().parse::<i64>().ok().or_else(|| b.trim().parse::<f64>().ok().map(|f| f as i64))?;
            Some(x.cmp(&y))
        }
        Some("number") => {
            let x = a.trim().parse::<f64>().ok()?;
            let y = b.trim().parse::<f64>().ok()?;
            x.partial_cmp(&y)
        }
        Some("version") => {
            let pa: Vec<i64> = a.split('.').map(|p| p.parse().unwrap_or(0)).collect();
            let pb: Vec<i64> = b.split('.').map(|p| p.parse().unwrap_or(0)).collect();
            let n = pa.len().max(pb.len());
            for i in 0..n {
                let o = pa.get(i).unwrap_or(&0).cmp(pb.get(i).unwrap_or(&0));
                if o != Ordering::Equal {
                    return Some(o);
                }
            }
            Some(Ordering::Equal)
        }
        Some("string") => Some(a.cmp(b)),
        _ => {
            // Default: integer when both parse as integers, else string... Pacemaker's
            // default type for comparisons is string unless both look numeric.
            match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
                (Ok(x), Ok(y)) => Some(x.cmp(&y)),
                _ => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                    (Ok(x), Ok(y)) if a.contains('.') || b.contains('.') => x.partial_cmp(&y),
                    _ => Some(a.cmp(b)),
                },
            }
        }
    }
}

fn eval_expr(e: &Expr, ctx: &RuleCtx<'_>) -> bool {
    match e {
        Expr::Rule(r) => eval(r, ctx),
        Expr::Date { .. } => false,
        // Resource and operation expressions match only where a resource or operation is
        // being evaluated (defaults); elsewhere they never match.
        Expr::Resource { class, provider, agent, .. } => ctx.rsc.is_some_and(|(c, p, t)| {
            class.as_deref().is_none_or(|x| x == c)
                && provider.as_deref().is_none_or(|x| Some(x) == p)
                && agent.as_deref().is_none_or(|x| x == t)
        }),
        Expr::Op { name, interval, .. } => ctx.op.is_some_and(|(n, ms)| {
            n == name && interval.as_deref().is_none_or(|i| crate::cib::xml::parse_interval_ms(i) == Some(ms))
        }),
        Expr::Attr { attribute, operation, value, value_type, value_source, .. } => {
            let actual = ctx.attrs.get(attribute).map(String::as_str);
            let op = operation.to_ascii_lowercase();
            if op == "defined" {
                return actual.is_some();
            }
            if op == "not_defined" {
                return actual.is_none();
            }
            // With a value source, the value names a resource parameter or meta attribute
            // whose value is compared.
            let expected = match value_source.as_deref() {
                Some("param") => ctx.rsc_attrs.and_then(|(p, _)| p.get(value.as_deref()?)).map(String::as_str),
                Some("meta") => ctx.rsc_attrs.and_then(|(_, m)| m.get(value.as_deref()?)).map(String::as_str),
                _ => value.as_deref(),
            };
            let (Some(a), Some(b)) = (actual, expected) else {
                return op == "ne";
            };
            let ty = value_type.as_deref();
            let ord = if op == "eq" || op == "ne" {
                match ty.map(str::to_ascii_lowercase).as_deref() {
                    Some("integer") | Some("number") | Some("version") => compare(a, b, ty),
                    _ => Some(a.cmp(b)),
                }
            } else {
                compare(a, b, ty)
            };
            let Some(ord) = ord else {
                // Unparseable values: fall back to a string comparison.
                let o = a.cmp(b);
                return match op.as_str() {
                    "eq" => o == Ordering::Equal,
                    "ne" => o != Ordering::Equal,
                    "lt" => o == Ordering::Less,
                    "lte" => o != Ordering::Greater,
                    "gt" => o == Ordering::Greater,
                    "gte" => o != Ordering::Less,
                    _ => false,
                };
            };
            match op.as_str() {
                "eq" => ord == Ordering::Equal,
                "ne" => ord != Ordering::Equal,
                "lt" => ord == Ordering::Less,
                "lte" => ord != Ordering::Greater,
                "gt" => ord == Ordering::Greater,
                "gte" => ord != Ordering::Less,
                _ => false,
            }
        }
    }
}

/// Whether a rule matches.
pub(crate) fn eval(rule: &Rule, ctx: &RuleCtx<'_>) -> bool {
    let _ = ctx.node;
    if rule.exprs.is_empty() {
        return true;
    }
    if rule.boolean_or {
        rule.exprs.iter().any(|e| eval_expr(e, ctx))
    } else {
        rule.exprs.iter().all(|e| eval_expr(e, ctx))
    }
}
