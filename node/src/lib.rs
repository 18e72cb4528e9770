//! vecino: the daemon and CLI that run one peer per host.
//!
//! For now this holds what every later part of the node needs first: the key file on disk and
//! the libp2p `PeerId` of the same key. The daemon (`vecino run`) arrives with its own issue.
#![deny(missing_docs)]

pub mod keyfile;
pub mod peer;
