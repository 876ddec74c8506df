//! keelson: a Kubernetes cluster provisioner for AWS, in the spirit of kops.
//!
//! The library is organised as discover -> plan -> apply, with I/O only at the
//! ends; see docs/architecture.md. The CLI in [`cli`] only parses and prints.

pub mod addons;
pub mod apply;
pub mod aws;
pub mod cli;
pub mod kube;
pub mod model;
pub mod node;
pub mod ops;
pub mod pki;
pub mod plan;
pub mod rolling;
pub mod spec;
pub mod state;
pub mod terraform;
pub mod validate;
