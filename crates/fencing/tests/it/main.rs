//! Integration tests of the fencing crate against real counterparts (ipmi_sim, libvirt's test
//! driver, moto, fence-agents scripts). Tests that need a counterpart skip with a reason when
//! it is missing, and fail instead under `HA_REQUIRE_RIGS=1`.

mod ec2;
mod fencer;
mod ipmi;
mod libvirt;
mod moto;
mod rigs;
mod script;
