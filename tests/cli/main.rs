//! Integration tests: the real `keelson` binary against the local AWS emulator.

mod harness;

mod addons;
mod attest;
mod bad_input;
mod bootstrap;
mod clock;
mod clocked;
mod crash;
mod create;
mod delete;
mod edit_replace;
mod etcd;
mod faults;
mod habits;
mod imds;
mod lease;
mod lock;
mod node_bootstrap;
mod observability;
mod preflight;
mod preview;
mod proxy;
mod rolling;
mod rolling_masters;
mod scale;
mod spec_aws_fields;
mod spec_fields;
mod state_cache;
mod terraform;
mod timings;
mod update;
mod upgrade;
mod validate;
