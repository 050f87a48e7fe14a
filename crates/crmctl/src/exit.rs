//! Exit codes: Pacemaker's `crm_exit_t` values, so existing scripts keep working.

use std::process::ExitCode;

/// A failure that maps to a specific exit code. Commands return it (wrapped in `anyhow`)
/// when the code matters to scripts.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Exit {
    pub(crate) code: u8,
    pub(crate) message: String,
}

#[allow(dead_code)]
impl Exit {
    pub(crate) const ERROR: u8 = 1;
    pub(crate) const INVALID_PARAM: u8 = 2;
    pub(crate) const NOT_INSTALLED: u8 = 5;
    pub(crate) const NOT_CONFIGURED: u8 = 6;
    pub(crate) const USAGE: u8 = 64;
    pub(crate) const NO_INPUT: u8 = 66;
    pub(crate) const UNAVAILABLE: u8 = 69;
    pub(crate) const CANT_CREATE: u8 = 73;
    pub(crate) const CONFIG: u8 = 78;
    pub(crate) const NOT_CONNECTED: u8 = 102;
    pub(crate) const OLD: u8 = 103;
    pub(crate) const NO_SUCH: u8 = 105;
    pub(crate) const NO_QUORUM: u8 = 106;
    pub(crate) const UNSAFE: u8 = 107;
    pub(crate) const EXISTS: u8 = 108;
    pub(crate) const NO_DC: u8 = 114;
    pub(crate) const TIMEOUT: u8 = 124;

    /// Builds an error carrying `code`.
    pub(crate) fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit { code, message: message.into() })
    }
}

/// The exit code for an error chain: the first [`Exit`] found, else 1.
pub(crate) fn code_for(err: &anyhow::Error) -> ExitCode {
    err.chain().find_map(|e| e.downcast_ref::<Exit>()).map_or(ExitCode::from(Exit::ERROR), |e| ExitCode::from(e.code))
}
