//! The simulator proven on a small example protocol (a heartbeat failure detector). The
//! example lives here, not in the product.

mod cib;
mod controller;
mod heartbeat;
mod membership;
mod world;
