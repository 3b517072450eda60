//! Nothing to use: this crate only pins the features of dependencies the workspace's crates
//! share (see its `Cargo.toml`), so that building one package reuses what building the whole
//! workspace compiled.
