//! The trust core: key files, the signed envelope, the typed statement and
//! its verification.
//!
//! Nothing here runs the sandbox or reads a checkpoint: this is the code a
//! promotion gate relies on, small enough to review on its own. The rest of
//! decant produces statements ([`crate::receipt`]) and gathers what a
//! verification needs ([`crate::gate`]).

pub mod dsse;
pub mod keys;
pub mod manifest;
pub mod oms;
pub mod shards;
pub mod statement;
pub mod verify;
pub mod vsa;
