//! Rebuild when a migration changes: `sqlx::migrate!` embeds the files at compile time and
//! stable Rust cannot tell Cargo about them from inside the macro.
#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
