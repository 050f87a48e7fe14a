//! Integration tests of the agents crate: the OCF runner against scripts, and every native agent
//! and its resource-agents counterpart against real resources (namespaces, loop devices,
//! nginx, libvirt, blockrepld pairs), each through the conformance suite.

mod support;
mod t10_ocf_runner;
mod t20_vip;
mod t30_filesystem;
mod t40_nginx;
mod t50_vm;
mod t60_ocf_tester;
mod t70_volume;
