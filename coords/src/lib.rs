//! vecino-coords: the latency map.
//!
//! Vivaldi network coordinates (Dabek et al., "Vivaldi: A Decentralized Network Coordinate
//! System", SIGCOMM 2004), proximity, barrios and the barrio centroid CRDT. Pure: no IO, no
//! clock, randomness injected by the caller.
//!
//! This crate is filled by the coordinates issue; until then it exports nothing.
#![deny(missing_docs)]
