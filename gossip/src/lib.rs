//! vecino-gossip: the sans-IO protocol engine.
//!
//! Membership, RCM-style links, anti-entropy sync and Plumtree-style broadcast, driven by
//! `handle(now, input) -> outputs` (see DESIGN.md §2). The engine arrives with its own issue;
//! this crate is only its place in the workspace for now and exports nothing.
#![deny(missing_docs)]
