//! Guardrail scanning throughput (filled in below).
fn main() {}
