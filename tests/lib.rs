//! Helpers shared by the workspace-wide tests in `it/`.
