//! Generated table types (see `ovn-nb/codegen`). `rustfmt::skip`: the generator's own layout
//! is what the freshness test compares against.

#[rustfmt::skip]
pub mod nb;
#[rustfmt::skip]
pub mod server;
#[rustfmt::skip]
pub mod vswitch;
