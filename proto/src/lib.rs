//! placeholder
#![allow(missing_docs)]
/// Generated protobuf types.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/vecino.v1.rs"));
}
