//! blockrepld's real-process tests: two daemons in two network namespaces.

mod daemon;
