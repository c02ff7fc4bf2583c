//! `sqlx::migrate!` embeds the migration files at compile time, and cargo cannot see a new file
//! in a folder by itself: without this, adding a migration rebuilds nothing and the binary runs
//! without it.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
