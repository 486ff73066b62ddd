//! A native async OVSDB client: RFC 7047 JSON-RPC and the Open vSwitch extensions.
//!
//! Work in progress: the wire layer, schema, transactions, monitors and replica land here (see
//! the project README for status).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
