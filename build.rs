//! Rebuilds when a migration is added or edited: `embed_migrations!` reads the directory at
//! compile time, and cargo cannot see that on its own (the advice of `diesel_migrations`).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
