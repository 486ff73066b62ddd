//! ovn-vpc: VPC networking for Kubernetes on OVN.
//!
//! This crate holds the control plane, the node shim, the CNI plugin and the tools. So far it
//! provides the OVN [`sandbox`] launcher that `ovn-vpc demo` and every test build on, and
//! [`dump`] (`ovn-vpc dump`) and [`show`] (`ovn-vpc show`), [`standalone`] (`apply`/`plan`),
//! [`runtime`] (`ovn-vpc controller`: the same engine inside a cluster), and the CNI plugin
//! [`cni`] (`ovn-vpc-cni`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod cni;
pub mod connect;
pub mod doctor;
pub mod dump;
mod http_server;
pub mod ipam;
pub mod manifest;
pub mod node;
pub mod owner;
pub mod runtime;
pub mod sandbox;
pub mod show;
pub mod standalone;
pub mod translate;
