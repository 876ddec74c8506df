//! Placeholder: the simulator lands with issue 7.
fn main() {}
