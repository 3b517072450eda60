//! `mcp-sql`: a SQL MCP server. SQLite embedded by default, PostgreSQL pooled; read-only enforced
//! by the engine (a read-only connection or transaction, one prepared statement per call, a
//! timeout the engine applies), not by looking at the SQL text.
//!
//! - [`db`]: the database a URL names, limits, and the shapes of answers.
//! - [`sqlite`], [`postgres`]: the two engines.
//! - [`value`]: values between JSON and the engines.
//! - [`tls`]: TLS to PostgreSQL with libpq's `sslmode`.
//! - [`server`]: the tools and resources.

pub mod db;
pub mod postgres;
pub mod server;
pub mod sqlite;
pub mod tls;
pub mod value;

pub use db::{Database, DbError, Options, Target};
pub use server::SqlServer;
