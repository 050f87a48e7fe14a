//! The CIB: model, Pacemaker XML import and export, validation.

mod export;
mod model;
mod validate;
pub(crate) mod xml;

pub(crate) use export::modern_name as xml_modern;
pub use export::to_xml;
pub use model::*;
pub use validate::validate;
pub use xml::parse_cib;
