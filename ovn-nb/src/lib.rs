//! Typed OVN model generated from `schemas/`, operations that read like `ovn-nbctl`, and a
//! desired-state diff.
//!
//! Work in progress (see the project README for status).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
