//! Compiles the shipped `rules/` into the crate (`RuleSet::embedded`), so that the binary
//! works from any folder. Every `*.toml` of the folder is taken: a new rule file needs no change here.

include!("../rade-schema/embed_dir.rs");

fn main() {
    embed_dir("rules", ".toml", "rules.rs");
}
