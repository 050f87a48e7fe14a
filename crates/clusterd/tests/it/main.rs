//! clusterd end to end: the sample configuration, a three-node cluster over loopback in one
//! process, and real processes in network namespaces (kill -9, iptables partitions, link down).

mod config;
mod fencing_netns;
mod join_netns;
mod loopback;
mod netns;
mod netrig;
mod quorum_netns;
mod volume_netns;
