//! Import/export round trips.
