//! An agent's parameter schema and actions (its OCF meta-data), typed validation of parameter
//! values against it, and the meta-data XML in both directions.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

/// The type of a parameter's value (`<content type=…>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamType {
    /// Any text.
    String,
    /// A signed integer.
    Integer,
    /// `true/false`, `yes/no`, `on/off`, `1/0` (Pacemaker's spellings).
    Boolean,
    /// A duration: a number with an optional unit (`ms`, `s`, `min`, `h`); a bare number is seconds.
    Duration,
    /// One of a fixed set of values.
    Select(Vec<String>),
}

impl ParamType {
    fn ocf_name(&self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Duration => "time",
            ParamType::Select(_) => "string",
        }
    }
}

/// One parameter of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// The name (`OCF_RESKEY_<name>`).
    pub name: String,
    /// The value type.
    pub kind: ParamType,
    /// Must be given.
    pub required: bool,
    /// Must differ between instances of this agent (OCF `unique`/`unique-group`).
    pub unique: bool,
    /// The value used when the parameter is not given.
    pub default: Option<String>,
    /// One line.
    pub shortdesc: String,
    /// Longer explanation.
    pub longdesc: String,
}

impl ParamSpec {
    /// An optional string parameter without a default.
    pub fn new(name: &str, kind: ParamType, shortdesc: &str) -> ParamSpec {
        ParamSpec {
            name: name.to_owned(),
            kind,
            required: false,
            unique: false,
            default: None,
            shortdesc: shortdesc.to_owned(),
            longdesc: String::new(),
        }
    }

    /// Marks the parameter required.
    pub fn required(mut self) -> ParamSpec {
        self.required = true;
        self
    }

    /// Marks the parameter unique across instances.
    pub fn unique(mut self) -> ParamSpec {
        self.unique = true;
        self
    }

    /// Sets the default.
    pub fn default(mut self, value: &str) -> ParamSpec {
        self.default = Some(value.to_owned());
        self
    }

    /// Sets the long description.
    pub fn long(mut self, text: &str) -> ParamSpec {
        self.longdesc = text.to_owned();
        self
    }
}

/// One action an agent advertises, with its default timeout (and interval/depth for monitors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    /// `start`, `stop`, `monitor`, …
    pub name: String,
    /// Default timeout.
    pub timeout: Duration,
    /// Default interval (recurring monitors).
    pub interval: Option<Duration>,
    /// `OCF_CHECK_LEVEL` for a monitor.
    pub depth: Option<u32>,
    /// `Promoted`/`Unpromoted` for role-specific monitors.
    pub role: Option<String>,
}

impl ActionSpec {
    /// An action with a default timeout.
    pub fn new(name: &str, timeout: Duration) -> ActionSpec {
        ActionSpec {
            name: name.to_owned(),
            timeout,
            interval: None,
            depth: None,
            role: None,
        }
    }

    /// A monitor with an interval and depth.
    pub fn monitor(timeout: Duration, interval: Duration, depth: u32) -> ActionSpec {
        ActionSpec {
            interval: Some(interval),
            depth: Some(depth),
            ..ActionSpec::new("monitor", timeout)
        }
    }
}

/// An agent's meta-data: what it is, its parameters and its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The agent's type name.
    pub name: String,
    /// The agent's own version.
    pub version: String,
    /// One line.
    pub shortdesc: String,
    /// Longer explanation.
    pub longdesc: String,
    /// Parameters in display order.
    pub params: Vec<ParamSpec>,
    /// Advertised actions.
    pub actions: Vec<ActionSpec>,
}

impl Metadata {
    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The first advertised action named `name`.
    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Distinct monitor depths advertised (always includes 0).
    pub fn monitor_depths(&self) -> Vec<u32> {
        let mut d: Vec<u32> = self
            .actions
            .iter()
            .filter(|a| a.name == "monitor")
            .map(|a| a.depth.unwrap_or(0))
            .chain([0])
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    }

    /// Checks `raw` against the schema: every problem at once, each naming its parameter.
    /// On success returns the typed values with defaults filled in.
    pub fn validate(&self, raw: &BTreeMap<String, String>) -> Result<Params, Vec<ParamError>> {
        let mut errors = Vec::new();
        let mut values = BTreeMap::new();
        for name in raw.keys() {
            if self.param(name).is_none() {
                errors.push(ParamError::Unknown {
                    agent: self.name.clone(),
                    name: name.clone(),
                    known: self.params.iter().map(|p| p.name.clone()).collect(),
                });
            }
        }
        for spec in &self.params {
            let given = raw.get(&spec.name).filter(|v| !v.is_empty());
            let Some(text) = given.or(spec.default.as_ref()) else {
                if spec.required {
                    errors.push(ParamError::Missing {
                        name: spec.name.clone(),
                        shortdesc: spec.shortdesc.clone(),
                    });
                }
                continue;
            };
            match parse_value(&spec.kind, text) {
                Ok(v) => {
                    values.insert(spec.name.clone(), v);
                }
                Err(expected) => errors.push(ParamError::Malformed {
                    name: spec.name.clone(),
                    value: text.clone(),
                    expected,
                }),
            }
        }
        if errors.is_empty() {
            Ok(Params { values })
        } else {
            Err(errors)
        }
    }

    /// Checks the `unique` parameters across several instances of this agent: two instances
    /// with the same value of a unique parameter are reported (each pair once).
    pub fn check_unique(&self, instances: &[(&str, &Params)]) -> Vec<ParamError> {
        let mut errors = Vec::new();
        for spec in self.params.iter().filter(|p| p.unique) {
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for (instance, params) in instances {
                let Some(v) = params.values.get(&spec.name) else {
                    continue;
                };
                let key = v.to_string();
                if let Some(first) = seen.get(&key) {
                    errors.push(ParamError::NotUnique {
                        name: spec.name.clone(),
                        value: key.clone(),
                        first: (*first).to_owned(),
                        second: (*instance).to_owned(),
                    });
                } else {
                    seen.insert(key, instance);
                }
            }
        }
        errors
    }

    /// Renders OCF 1.1 meta-data XML.
    pub fn to_xml(&self) -> String {
        let mut x = String::new();
        let _ = writeln!(x, "<?xml version=\"1.0\"?>");
        let _ = writeln!(x, "<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">");
        let _ = writeln!(
            x,
            "<resource-agent name=\"{}\" version=\"{}\">",
            esc(&self.name),
            esc(&self.version)
        );
        // OCF 1.0 meta-data (ra-api-1.dtd): what the installed tools validate against.
        let _ = writeln!(x, "<version>1.0</version>");
        let _ = writeln!(
            x,
            "<longdesc lang=\"en\">{}</longdesc>",
            esc(&self.longdesc)
        );
        let _ = writeln!(
            x,
            "<shortdesc lang=\"en\">{}</shortdesc>",
            esc(&self.shortdesc)
        );
        let _ = writeln!(x, "<parameters>");
        for p in &self.params {
            let _ = writeln!(
                x,
                "<parameter name=\"{}\" unique=\"{}\" required=\"{}\">",
                esc(&p.name),
                u8::from(p.unique),
                u8::from(p.required)
            );
            // A select (OCF 1.1) is written as a string whose allowed values the text lists.
            let long = match &p.kind {
                ParamType::Select(options) => {
                    let list = format!("Allowed values: {}.", options.join(", "));
                    if p.longdesc.is_empty() {
                        list
                    } else {
                        format!("{} {list}", p.longdesc)
                    }
                }
                _ => p.longdesc.clone(),
            };
            let _ = writeln!(x, "<longdesc lang=\"en\">{}</longdesc>", esc(&long));
            let _ = writeln!(
                x,
                "<shortdesc lang=\"en\">{}</shortdesc>",
                esc(&p.shortdesc)
            );
            let default = p
                .default
                .as_ref()
                .map(|d| format!(" default=\"{}\"", esc(d)))
                .unwrap_or_default();
            let _ = writeln!(x, "<content type=\"{}\"{default}/>", p.kind.ocf_name());
            let _ = writeln!(x, "</parameter>");
        }
        let _ = writeln!(x, "</parameters>");
        let _ = writeln!(x, "<actions>");
        for a in &self.actions {
            let mut line = format!(
                "<action name=\"{}\" timeout=\"{}s\"",
                esc(&a.name),
                a.timeout.as_secs()
            );
            if let Some(i) = a.interval {
                let _ = write!(line, " interval=\"{}s\"", i.as_secs());
            }
            if let Some(d) = a.depth {
                let _ = write!(line, " depth=\"{d}\"");
            }
            if let Some(r) = &a.role {
                let _ = write!(line, " role=\"{}\"", esc(r));
            }
            let _ = writeln!(x, "{line}/>");
        }
        let _ = writeln!(x, "</actions>");
        let _ = writeln!(x, "</resource-agent>");
        x
    }

    /// Parses OCF meta-data XML (1.0 or 1.1) into the same schema native agents use. Unknown
    /// content types are read as strings; `unique-group` counts as unique.
    pub fn from_xml(xml: &str) -> Result<Metadata, MetadataError> {
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        let doc =
            roxmltree::Document::parse_with_options(xml, opts).map_err(|e| MetadataError::Xml {
                detail: e.to_string(),
            })?;
        let root = doc.root_element();
        if root.tag_name().name() != "resource-agent" {
            return Err(MetadataError::Shape {
                detail: format!(
                    "root element is <{}>, expected <resource-agent>",
                    root.tag_name().name()
                ),
            });
        }
        let text_of = |node: roxmltree::Node<'_, '_>, tag: &str| -> String {
            node.children()
                .find(|c| c.has_tag_name(tag))
                .and_then(|c| c.text())
                .map(|t| t.trim().to_owned())
                .unwrap_or_default()
        };
        let mut md = Metadata {
            name: root.attribute("name").unwrap_or_default().to_owned(),
            version: root
                .attribute("version")
                .map(str::to_owned)
                .unwrap_or_else(|| text_of(root, "version")),
            shortdesc: text_of(root, "shortdesc"),
            longdesc: text_of(root, "longdesc"),
            params: Vec::new(),
            actions: Vec::new(),
        };
        for params in root.children().filter(|c| c.has_tag_name("parameters")) {
            for p in params.children().filter(|c| c.has_tag_name("parameter")) {
                let Some(name) = p.attribute("name") else {
                    return Err(MetadataError::Shape {
                        detail: "a <parameter> has no name".into(),
                    });
                };
                let truthy = |v: Option<&str>| matches!(v, Some("1" | "true" | "yes"));
                let content = p.children().find(|c| c.has_tag_name("content"));
                let kind = match content.and_then(|c| c.attribute("type")) {
                    Some("integer") => ParamType::Integer,
                    Some("boolean") => ParamType::Boolean,
                    Some("timeout" | "duration" | "time") => ParamType::Duration,
                    Some("select") => ParamType::Select(
                        content
                            .into_iter()
                            .flat_map(|c| c.children())
                            .filter(|o| o.has_tag_name("option"))
                            .filter_map(|o| o.attribute("value").map(str::to_owned))
                            .collect(),
                    ),
                    _ => ParamType::String,
                };
                md.params.push(ParamSpec {
                    name: name.to_owned(),
                    kind,
                    required: truthy(p.attribute("required")),
                    unique: truthy(p.attribute("unique")) || p.attribute("unique-group").is_some(),
                    default: content
                        .and_then(|c| c.attribute("default"))
                        .map(str::to_owned),
                    shortdesc: text_of(p, "shortdesc"),
                    longdesc: text_of(p, "longdesc"),
                });
            }
        }
        for actions in root.children().filter(|c| c.has_tag_name("actions")) {
            for a in actions.children().filter(|c| c.has_tag_name("action")) {
                let Some(name) = a.attribute("name") else {
                    continue;
                };
                let dur = |attr: &str| a.attribute(attr).and_then(parse_duration);
                md.actions.push(ActionSpec {
                    name: name.to_owned(),
                    timeout: dur("timeout").unwrap_or(Duration::from_secs(20)),
                    interval: dur("interval").filter(|d| !d.is_zero()),
                    depth: a
                        .attribute("depth")
                        .or_else(|| a.attribute("OCF_CHECK_LEVEL"))
                        .and_then(|d| d.parse().ok()),
                    role: a.attribute("role").map(str::to_owned),
                });
            }
        }
        Ok(md)
    }
}

/// A meta-data document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Not well-formed XML.
    #[error("meta-data is not well-formed XML: {detail}")]
    Xml {
        /// The parser's message.
        detail: String,
    },
    /// Well-formed but not OCF meta-data.
    #[error("meta-data is not an OCF resource-agent document: {detail}")]
    Shape {
        /// What was wrong.
        detail: String,
    },
}

/// A parameter problem; every variant names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// A required parameter was not given.
    #[error("parameter `{name}` is required ({shortdesc}); set {name}=…")]
    Missing {
        /// The parameter.
        name: String,
        /// What it is.
        shortdesc: String,
    },
    /// A value does not parse as the parameter's type.
    #[error("parameter `{name}`: `{value}` is not {expected}")]
    Malformed {
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
        /// What the type accepts.
        expected: String,
    },
    /// A parameter the agent does not have.
    #[error("agent {agent} has no parameter `{name}` (it has: {})", known.join(", "))]
    Unknown {
        /// The agent.
        agent: String,
        /// The parameter given.
        name: String,
        /// The parameters it has.
        known: Vec<String>,
    },
    /// Two instances share the value of a unique parameter.
    #[error(
        "parameter `{name}` must be unique, but `{value}` is used by both {first} and {second}"
    )]
    NotUnique {
        /// The parameter.
        name: String,
        /// The shared value.
        value: String,
        /// One instance.
        first: String,
        /// The other.
        second: String,
    },
    /// A value is well-typed but not acceptable to the agent (checked by the agent itself).
    #[error("parameter `{name}`: {problem}")]
    Invalid {
        /// The parameter.
        name: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl ParamError {
    /// The parameter this error is about.
    pub fn param(&self) -> &str {
        match self {
            ParamError::Missing { name, .. }
            | ParamError::Malformed { name, .. }
            | ParamError::Unknown { name, .. }
            | ParamError::NotUnique { name, .. }
            | ParamError::Invalid { name, .. } => name,
        }
    }
}

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string or select value.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A duration.
    Duration(Duration),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Duration(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

/// Validated parameters, defaults filled in. Getters return `None` for absent optional values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    /// A string (or select) value.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer value.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A boolean value (absent counts as false).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    /// A duration value.
    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.values.get(name) {
            Some(Value::Duration(d)) => Some(*d),
            _ => None,
        }
    }

    /// Every value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

fn parse_value(kind: &ParamType, text: &str) -> Result<Value, String> {
    match kind {
        ParamType::String => Ok(Value::Str(text.to_owned())),
        ParamType::Integer => text
            .trim()
            .parse()
            .map(Value::Int)
            .map_err(|_| "an integer".to_owned()),
        ParamType::Boolean => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| "a boolean (true/false, yes/no, on/off, 1/0)".to_owned()),
        ParamType::Duration => parse_duration(text)
            .map(Value::Duration)
            .ok_or_else(|| "a duration such as 500ms, 20s, 5min or 1h".to_owned()),
        ParamType::Select(options) => {
            if options.iter().any(|o| o == text) {
                Ok(Value::Str(text.to_owned()))
            } else {
                Err(format!("one of {}", options.join(", ")))
            }
        }
    }
}

/// Parses Pacemaker's boolean spellings.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// Parses a Pacemaker duration (`30s`, `5min`, `1h`, `500ms`; a bare number is seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" | "sec" | "secs" => n.checked_mul(1000),
        "ms" | "msec" | "msecs" => Some(n),
        "m" | "min" | "mins" => n.checked_mul(60_000),
        "h" | "hr" | "hrs" => n.checked_mul(3_600_000),
        "us" | "usec" => Some(n / 1000),
        _ => None,
    }?;
    Some(Duration::from_millis(ms))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            name: "vip".into(),
            version: "1.0".into(),
            shortdesc: "A <virtual> IP".into(),
            longdesc: "Long & winding".into(),
            params: vec![
                ParamSpec::new("ip", ParamType::String, "the address")
                    .required()
                    .unique(),
                ParamSpec::new("cidr", ParamType::Integer, "prefix length"),
                ParamSpec::new("arp", ParamType::Boolean, "send arp").default("true"),
                ParamSpec::new("delay", ParamType::Duration, "delay").default("200ms"),
                ParamSpec::new(
                    "mode",
                    ParamType::Select(vec!["a".into(), "b".into()]),
                    "mode",
                ),
            ],
            actions: vec![
                ActionSpec::new("start", Duration::from_secs(20)),
                ActionSpec::monitor(Duration::from_secs(20), Duration::from_secs(10), 10),
            ],
        }
    }

    fn raw(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn validation_fills_defaults_and_types_values() {
        let p = sample()
            .validate(&raw(&[("ip", "10.0.0.1"), ("cidr", "24")]))
            .unwrap();
        assert_eq!(p.str("ip"), Some("10.0.0.1"));
        assert_eq!(p.int("cidr"), Some(24));
        assert!(p.flag("arp"));
        assert_eq!(p.duration("delay"), Some(Duration::from_millis(200)));
        assert_eq!(p.str("mode"), None);
    }

    #[test]
    fn validation_reports_every_problem_naming_the_parameter() {
        let errs = sample()
            .validate(&raw(&[
                ("cidr", "abc"),
                ("arp", "maybe"),
                ("mode", "c"),
                ("bogus", "1"),
            ]))
            .unwrap_err();
        let names: Vec<&str> = errs.iter().map(ParamError::param).collect();
        assert_eq!(names, ["bogus", "ip", "cidr", "arp", "mode"]);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(text[1].contains("`ip` is required"), "{text:?}");
        assert!(text[2].contains("`abc` is not an integer"), "{text:?}");
        assert!(text[4].contains("one of a, b"), "{text:?}");
    }

    #[test]
    fn unique_parameters_clash_across_instances() {
        let md = sample();
        let a = md.validate(&raw(&[("ip", "10.0.0.1")])).unwrap();
        let b = md.validate(&raw(&[("ip", "10.0.0.1")])).unwrap();
        let c = md.validate(&raw(&[("ip", "10.0.0.2")])).unwrap();
        let errs = md.check_unique(&[("vip1", &a), ("vip2", &b), ("vip3", &c)]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("vip1 and vip2"), "{}", errs[0]);
    }

    #[test]
    fn meta_data_xml_round_trips_as_ocf_1_0() {
        let md = sample();
        let back = Metadata::from_xml(&md.to_xml()).unwrap();
        let mut expected = md.clone();
        // OCF 1.0 has no select: it becomes a string whose description lists the values.
        expected.params[4].kind = ParamType::String;
        expected.params[4].longdesc = "Allowed values: a, b.".into();
        assert_eq!(back, expected);
    }

    #[test]
    fn ocf_1_1_select_parameters_are_read() {
        let xml = r#"<resource-agent name="x"><parameters><parameter name="m">
            <content type="select" default="a"><option value="a"/><option value="b"/></content>
            </parameter></parameters></resource-agent>"#;
        let md = Metadata::from_xml(xml).unwrap();
        assert_eq!(
            md.params[0].kind,
            ParamType::Select(vec!["a".into(), "b".into()])
        );
        assert_eq!(md.params[0].default.as_deref(), Some("a"));
    }

    #[test]
    fn malformed_meta_data_is_an_error() {
        assert!(matches!(
            Metadata::from_xml("<resource-agent"),
            Err(MetadataError::Xml { .. })
        ));
        assert!(matches!(
            Metadata::from_xml("<html/>"),
            Err(MetadataError::Shape { .. })
        ));
    }

    #[test]
    fn durations_follow_pacemaker() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5min"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_none());
        assert!(parse_duration("").is_none());
    }
}
