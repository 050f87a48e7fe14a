//! OCF result codes and the recovery class the cluster applies to each.

use std::fmt;

/// An OCF 1.1 result code (`OCF_…`). Unlisted codes are kept as [`OcfRc::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OcfRc {
    /// 0: the action succeeded (for monitor: running).
    Success,
    /// 1: generic error.
    ErrGeneric,
    /// 2: invalid arguments for this node.
    ErrArgs,
    /// 3: the action is not implemented.
    ErrUnimplemented,
    /// 4: insufficient privileges.
    ErrPerm,
    /// 5: a required component is missing on this node.
    ErrInstalled,
    /// 6: the configuration is invalid everywhere.
    ErrConfigured,
    /// 7: the resource is cleanly stopped (a monitor result).
    NotRunning,
    /// 8: running in the promoted role.
    RunningPromoted,
    /// 9: failed in the promoted role.
    FailedPromoted,
    /// 190: running, but degraded.
    Degraded,
    /// 191: running promoted, but degraded.
    DegradedPromoted,
    /// Any other exit code.
    Other(u8),
}

/// What the cluster does after an unexpected result (Pacemaker's recovery classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recovery {
    /// Nothing: the result is success (possibly shown as degraded), or a clean "not running".
    None,
    /// Transient: restart the resource here or move it.
    Soft,
    /// Node-specific: move the resource and ban it from this node.
    Hard,
    /// Configuration error: stop the resource everywhere.
    Fatal,
}

impl OcfRc {
    /// The code for an exit status.
    pub fn from_code(code: u8) -> OcfRc {
        match code {
            0 => OcfRc::Success,
            1 => OcfRc::ErrGeneric,
            2 => OcfRc::ErrArgs,
            3 => OcfRc::ErrUnimplemented,
            4 => OcfRc::ErrPerm,
            5 => OcfRc::ErrInstalled,
            6 => OcfRc::ErrConfigured,
            7 => OcfRc::NotRunning,
            8 => OcfRc::RunningPromoted,
            9 => OcfRc::FailedPromoted,
            190 => OcfRc::Degraded,
            191 => OcfRc::DegradedPromoted,
            other => OcfRc::Other(other),
        }
    }

    /// The numeric exit code.
    pub fn code(self) -> u8 {
        match self {
            OcfRc::Success => 0,
            OcfRc::ErrGeneric => 1,
            OcfRc::ErrArgs => 2,
            OcfRc::ErrUnimplemented => 3,
            OcfRc::ErrPerm => 4,
            OcfRc::ErrInstalled => 5,
            OcfRc::ErrConfigured => 6,
            OcfRc::NotRunning => 7,
            OcfRc::RunningPromoted => 8,
            OcfRc::FailedPromoted => 9,
            OcfRc::Degraded => 190,
            OcfRc::DegradedPromoted => 191,
            OcfRc::Other(c) => c,
        }
    }

    /// The `OCF_…` name (Pacemaker's spelling, with the new promoted names).
    pub fn name(self) -> &'static str {
        match self {
            OcfRc::Success => "OCF_SUCCESS",
            OcfRc::ErrGeneric => "OCF_ERR_GENERIC",
            OcfRc::ErrArgs => "OCF_ERR_ARGS",
            OcfRc::ErrUnimplemented => "OCF_ERR_UNIMPLEMENTED",
            OcfRc::ErrPerm => "OCF_ERR_PERM",
            OcfRc::ErrInstalled => "OCF_ERR_INSTALLED",
            OcfRc::ErrConfigured => "OCF_ERR_CONFIGURED",
            OcfRc::NotRunning => "OCF_NOT_RUNNING",
            OcfRc::RunningPromoted => "OCF_RUNNING_PROMOTED",
            OcfRc::FailedPromoted => "OCF_FAILED_PROMOTED",
            OcfRc::Degraded => "OCF_DEGRADED",
            OcfRc::DegradedPromoted => "OCF_DEGRADED_PROMOTED",
            OcfRc::Other(_) => "unknown",
        }
    }

    /// The recovery class when this code is a failure. `Success`, `NotRunning`, `RunningPromoted`
    /// and the degraded codes map to [`Recovery::None`] here: whether they are failures depends
    /// on what the caller expected (see [`OcfRc::recovery_when_expecting`]).
    pub fn recovery(self) -> Recovery {
        match self {
            OcfRc::Success
            | OcfRc::NotRunning
            | OcfRc::RunningPromoted
            | OcfRc::Degraded
            | OcfRc::DegradedPromoted => Recovery::None,
            OcfRc::ErrGeneric | OcfRc::FailedPromoted | OcfRc::Other(_) => Recovery::Soft,
            OcfRc::ErrArgs | OcfRc::ErrUnimplemented | OcfRc::ErrPerm | OcfRc::ErrInstalled => {
                Recovery::Hard
            }
            OcfRc::ErrConfigured => Recovery::Fatal,
        }
    }

    /// The recovery class given the code the caller expected: an unexpected success, not-running
    /// or promoted result is a soft failure; the expected code, or a degraded variant of it, is none.
    pub fn recovery_when_expecting(self, expected: OcfRc) -> Recovery {
        let degraded_ok = matches!(
            (expected, self),
            (OcfRc::Success, OcfRc::Degraded) | (OcfRc::RunningPromoted, OcfRc::DegradedPromoted)
        );
        if self == expected || degraded_ok {
            return Recovery::None;
        }
        match self.recovery() {
            Recovery::None => Recovery::Soft,
            other => other,
        }
    }
}

impl fmt::Display for OcfRc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Recovery::None => "none",
            Recovery::Soft => "soft",
            Recovery::Hard => "hard",
            Recovery::Fatal => "fatal",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(OcfRc::from_code(code).code(), code);
        }
    }

    #[test]
    fn recovery_classes_follow_pacemaker() {
        assert_eq!(OcfRc::ErrGeneric.recovery(), Recovery::Soft);
        assert_eq!(OcfRc::ErrArgs.recovery(), Recovery::Hard);
        assert_eq!(OcfRc::ErrInstalled.recovery(), Recovery::Hard);
        assert_eq!(OcfRc::ErrConfigured.recovery(), Recovery::Fatal);
        assert_eq!(OcfRc::Other(42).recovery(), Recovery::Soft);
        assert_eq!(
            OcfRc::NotRunning.recovery_when_expecting(OcfRc::Success),
            Recovery::Soft
        );
        assert_eq!(
            OcfRc::NotRunning.recovery_when_expecting(OcfRc::NotRunning),
            Recovery::None
        );
        assert_eq!(
            OcfRc::Degraded.recovery_when_expecting(OcfRc::Success),
            Recovery::None
        );
    }
}
