//! Workspace-wide tests: tidy rules now; real multi-process scenarios as they land.

mod tidy;
