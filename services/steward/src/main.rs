//! The steward binary: runs every service in one process (up) or chosen ones (run).
fn main() {}
