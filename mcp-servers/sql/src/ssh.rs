//! SSH tunnels to databases behind a bastion (`ssh = "user@host:port"`).

use crate::{
    config::DatabaseConfig,
    db::{DbError, Target},
};

/// What keeps a tunnel open while its database is served.
pub type Keep = Box<dyn std::any::Any + Send + Sync>;

/// The target to connect to: the configured one, or one through a tunnel to it.
pub async fn through_tunnel(entry: &DatabaseConfig) -> Result<(Target, Option<Keep>), DbError> {
    match &entry.ssh {
        None => Ok((entry.target.clone(), None)),
        Some(_) => Err(DbError::new("ssh tunnels are not built yet")),
    }
}
