//! `mcp-sql`: a SQL MCP server. SQLite embedded by default, PostgreSQL pooled; read-only enforced
//! by the engine (a read-only connection or transaction, one prepared statement per call, a
//! timeout the engine applies), not by looking at the SQL text.
//!
//! What it offers: [`SqlServer`] (the tools and resources) over a [`Database`] that a
//! [`Target`] names, opened with [`Options`]; [`DbError`] is how any of them fails.
//!
//! Inside (private modules, in the order a request meets them): `server` (tools and
//! resources), `db` (the database a URL names, limits, the shapes of answers), `sqlite` and
//! `postgres` (the two engines), `value` (values between JSON and the engines), `tls` (TLS to
//! PostgreSQL with libpq's `sslmode`).

#![warn(missing_docs)]

mod config;
mod db;
mod export;
mod mariadb;
mod named;
mod postgres;
mod server;
mod sqlite;
mod ssh;
mod value;

pub use config::{Config, DatabaseConfig, DenyRule, ParamConfig, ParamType, SshConfig, ToolConfig};
pub use db::{
    Column, ColumnInfo, Database, DbError, ForeignKey, IndexInfo, ObjectMatch, Options,
    QueryRequest, RowWriter, Rows, TableDescription, TableSummary, Target,
};
pub use export::{DEFAULT_MAX_EXPORT_BYTES, Export, ExportFormat, ExportSummary};
pub use server::{Served, SqlServer};
