//! The integration tests of `mcp-server-sql`, in one binary so that the crate and its
//! dependencies are linked once. A new test goes in the module of its subject; one that needs a
//! service or model files is marked `#[ignore = "needs …"]` (`.ci/run` runs those too).
//!
//! - `config`: `mcp-sql --config`: several databases, config tools, deny lists, exports.
//! - `mariadb`: `mcp-sql` on a real MariaDB.
//! - `postgres`: `mcp-sql` on a real PostgreSQL.
//! - `postgres_tls`: tLS to a real PostgreSQL with libpq's `sslmode`.
//! - `protocol`: `mcp-sql` as hosts run it.
//! - `sqlite`: `mcp-sql` on SQLite through the protocol.
//! - `ssh`: databases behind an SSH bastion (a real sshd).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod mariadb;
mod postgres;
mod postgres_tls;
mod protocol;
mod sqlite;
mod ssh;
mod support;
