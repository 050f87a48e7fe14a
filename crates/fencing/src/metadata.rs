//! Agent self-descriptions: parsed from a fence-agents script's `-o metadata` XML, or built
//! in for the native agents, and rendered as text (for `crmctl stonith describe`) or as the
//! same XML shape.

use std::fmt::Write as _;

/// What an agent is and which parameters it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Agent name (`fence_ipmilan`, `ipmi`, …).
    pub name: String,
    /// One line.
    pub shortdesc: String,
    /// A paragraph.
    pub longdesc: String,
    /// Parameters in declaration order.
    pub parameters: Vec<Parameter>,
    /// Supported action names.
    pub actions: Vec<String>,
}

/// One agent parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// Name as given on stdin (`ip`, `password`, …).
    pub name: String,
    /// Required for the agent to work.
    pub required: bool,
    /// `string`, `boolean`, `integer`, `second`, `select`.
    pub content_type: String,
    /// Default value, if any.
    pub default: Option<String>,
    /// One line.
    pub shortdesc: String,
    /// Deprecated alias of another parameter.
    pub deprecated: bool,
}

/// Why metadata XML was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Not well-formed XML.
    #[error("metadata is not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed but not a `<resource-agent>` document.
    #[error("metadata root element is `{found}`, expected `resource-agent`")]
    Root {
        /// The root element found.
        found: String,
    },
    /// The root lacks a name.
    #[error("metadata `<resource-agent>` has no `name` attribute")]
    NoName,
}

/// Largest metadata document accepted (fence_ipmilan's is ~12 KiB).
pub(crate) const MAX_METADATA_BYTES: usize = 1 << 20;

impl Metadata {
    /// Parses fence-agents metadata XML.
    pub fn parse_xml(xml: &str) -> Result<Metadata, MetadataError> {
        if xml.len() > MAX_METADATA_BYTES {
            return Err(MetadataError::Xml(format!(
                "{} bytes exceeds the {MAX_METADATA_BYTES}-byte limit",
                xml.len()
            )));
        }
        let doc = roxmltree::Document::parse(xml).map_err(|e| MetadataError::Xml(e.to_string()))?;
        let root = doc.root_element();
        if root.tag_name().name() != "resource-agent" {
            return Err(MetadataError::Root {
                found: root.tag_name().name().to_owned(),
            });
        }
        let name = root.attribute("name").ok_or(MetadataError::NoName)?;
        let child_text = |node: roxmltree::Node<'_, '_>, tag: &str| {
            node.children()
                .find(|c| c.has_tag_name(tag))
                .and_then(|c| c.text())
                .map(|t| t.trim().to_owned())
        };
        let shortdesc = root
            .attribute("shortdesc")
            .map(str::to_owned)
            .or_else(|| child_text(root, "shortdesc"))
            .unwrap_or_default();
        let longdesc = child_text(root, "longdesc").unwrap_or_default();
        let mut parameters = Vec::new();
        if let Some(params) = root.children().find(|c| c.has_tag_name("parameters")) {
            for p in params.children().filter(|c| c.has_tag_name("parameter")) {
                let Some(pname) = p.attribute("name") else {
                    continue;
                };
                let content = p.children().find(|c| c.has_tag_name("content"));
                parameters.push(Parameter {
                    name: pname.to_owned(),
                    required: p.attribute("required") == Some("1"),
                    content_type: content
                        .and_then(|c| c.attribute("type"))
                        .unwrap_or("string")
                        .to_owned(),
                    default: content
                        .and_then(|c| c.attribute("default"))
                        .map(str::to_owned),
                    shortdesc: child_text(p, "shortdesc").unwrap_or_default(),
                    deprecated: p.attribute("deprecated") == Some("1"),
                });
            }
        }
        let actions = root
            .children()
            .find(|c| c.has_tag_name("actions"))
            .map(|a| {
                a.children()
                    .filter(|c| c.has_tag_name("action"))
                    .filter_map(|c| c.attribute("name").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Metadata {
            name: name.to_owned(),
            shortdesc,
            longdesc,
            parameters,
            actions,
        })
    }

    /// True when the agent declares `action`.
    pub fn supports(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }

    /// Human-readable description, like `pcs stonith describe`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} - {}", self.name, self.shortdesc);
        if !self.longdesc.is_empty() {
            let _ = writeln!(out, "\n{}", self.longdesc);
        }
        let _ = writeln!(out, "\nParameters:");
        for p in self.parameters.iter().filter(|p| !p.deprecated) {
            let mut flags = vec![p.content_type.clone()];
            if p.required {
                flags.push("required".into());
            }
            if let Some(d) = &p.default {
                flags.push(format!("default {d}"));
            }
            let _ = writeln!(out, "  {} ({}): {}", p.name, flags.join(", "), p.shortdesc);
        }
        let _ = writeln!(out, "\nActions: {}", self.actions.join(" "));
        out
    }

    /// The fence-agents XML shape.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<?xml version=\"1.0\" ?>");
        let _ = writeln!(
            out,
            "<resource-agent name=\"{}\" shortdesc=\"{}\">",
            escape(&self.name),
            escape(&self.shortdesc)
        );
        let _ = writeln!(out, "<longdesc>{}</longdesc>", escape(&self.longdesc));
        let _ = writeln!(out, "<parameters>");
        for p in &self.parameters {
            let _ = writeln!(
                out,
                "\t<parameter name=\"{}\" unique=\"0\" required=\"{}\"{}>",
                escape(&p.name),
                u8::from(p.required),
                if p.deprecated {
                    " deprecated=\"1\""
                } else {
                    ""
                }
            );
            match &p.default {
                Some(d) => {
                    let _ = writeln!(
                        out,
                        "\t\t<content type=\"{}\" default=\"{}\" />",
                        escape(&p.content_type),
                        escape(d)
                    );
                }
                None => {
                    let _ = writeln!(out, "\t\t<content type=\"{}\" />", escape(&p.content_type));
                }
            }
            let _ = writeln!(
                out,
                "\t\t<shortdesc lang=\"en\">{}</shortdesc>",
                escape(&p.shortdesc)
            );
            let _ = writeln!(out, "\t</parameter>");
        }
        let _ = writeln!(out, "</parameters>\n<actions>");
        for a in &self.actions {
            let _ = writeln!(out, "\t<action name=\"{}\" />", escape(a));
        }
        let _ = writeln!(out, "</actions>\n</resource-agent>");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Builds a parameter for the native agents' built-in metadata.
pub(crate) fn param(
    name: &str,
    required: bool,
    content_type: &str,
    default: Option<&str>,
    shortdesc: &str,
) -> Parameter {
    Parameter {
        name: name.to_owned(),
        required,
        content_type: content_type.to_owned(),
        default: default.map(str::to_owned),
        shortdesc: shortdesc.to_owned(),
        deprecated: false,
    }
}

/// The fencer's own `pcmk_*` parameters, accepted by every device.
pub(crate) fn fencer_parameters() -> Vec<Parameter> {
    vec![
        param(
            "pcmk_host_list",
            false,
            "string",
            None,
            "Nodes this device can fence (space or comma separated)",
        ),
        param(
            "pcmk_host_map",
            false,
            "string",
            None,
            "Node to plug map, e.g. node1:1;node2:2,3",
        ),
        param(
            "pcmk_host_check",
            false,
            "select",
            None,
            "static-list, dynamic-list, status or none",
        ),
        param(
            "pcmk_delay_base",
            false,
            "string",
            Some("0s"),
            "Static delay before fencing, or a per-node map node1:0s;node2:5s",
        ),
        param(
            "pcmk_delay_max",
            false,
            "time",
            Some("0s"),
            "Upper bound of base plus random delay before fencing",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_xml() {
        let m = Metadata {
            name: "x".into(),
            shortdesc: "a <b> & c".into(),
            longdesc: "long".into(),
            parameters: vec![param("ip", true, "string", Some("1\"2"), "addr")],
            actions: vec!["on".into(), "off".into()],
        };
        assert_eq!(Metadata::parse_xml(&m.to_xml()).unwrap(), m);
    }

    #[test]
    fn metadata_rejects_other_documents() {
        assert!(matches!(
            Metadata::parse_xml("<html/>"),
            Err(MetadataError::Root { .. })
        ));
        assert!(matches!(
            Metadata::parse_xml("<resource-agent"),
            Err(MetadataError::Xml(_))
        ));
        assert!(matches!(
            Metadata::parse_xml("<resource-agent/>"),
            Err(MetadataError::NoName)
        ));
    }
}
