//! decant's integration tests: one binary (one link, one run of the
//! harness), one module per concern. Each test says which behaviour or bug
//! it guards.
// Tests may unwrap, expect, panic and index: a failing test is the point.
// (clippy.toml allows these in unit tests; an integration test crate's
// helpers are not inside #[test] functions, so they are allowed here.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

mod bundle;
mod cli;
mod common;
mod convert;
mod cyclonedx;
mod dirs;
mod environment;
mod hf_cache;
mod hostile;
mod interrupt;
mod oms;
mod receipts;
mod sandbox;
mod shards;
mod vsa;
