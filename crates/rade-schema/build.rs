//! Compiles the shipped `schemas/` into the crate (`Catalog::embedded`), so that the binary
//! works from any folder. Every file of the folder is taken: a new schema needs no change here.

include!("embed_dir.rs");

fn main() {
    embed_dir("schemas", "", "schemas.rs");
}
