//! Errors and diagnostics of the CIB importer and validator.

use std::fmt;

/// A CIB that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CibError {
    /// The text is not well-formed XML.
    #[error("malformed xml: {detail}")]
    Xml {
        /// Parser message with position.
        detail: String,
    },
    /// An element has a missing or invalid field.
    #[error("<{element} id=\"{id}\">: field {field}: {problem}")]
    Invalid {
        /// Element name.
        element: String,
        /// Element id (may be empty).
        id: String,
        /// Attribute or child.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// Validation found problems; all of them are listed.
    #[error("invalid configuration: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Validation {
        /// Every problem found.
        problems: Vec<Diagnostic>,
    },
}

/// One problem or warning about one element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Element name.
    pub element: String,
    /// Element id (may be empty).
    pub id: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id.is_empty() {
            write!(f, "<{}>: {}", self.element, self.message)
        } else {
            write!(f, "<{} id=\"{}\">: {}", self.element, self.id, self.message)
        }
    }
}
