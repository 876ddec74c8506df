//! Integration tests: the real `keelson` binary against the local AWS emulator.

mod harness;

mod bad_input;
mod crash;
mod create;
mod delete;
mod edit_replace;
mod lock;
mod rolling;
mod update;
mod validate;
