//! SSH tunnels to databases behind a bastion (`ssh = "user@host:port"`), with russh.
//!
//! The bastion's host key is checked against known_hosts (`~/.ssh/known_hosts` unless
//! `ssh_known_hosts` says otherwise): an unknown host is refused unless `ssh_accept_new_host`
//! (then its key is recorded, as OpenSSH's `StrictHostKeyChecking=accept-new` does), and a
//! changed key is always refused. Authentication is by key only: a key file (`ssh_key`,
//! unencrypted) or the SSH agent (`SSH_AUTH_SOCK`); no password ever sits in the config.
//!
//! The tunnel listens on an ephemeral port of 127.0.0.1 and forwards each connection the pool
//! opens through a `direct-tcpip` channel to the database's host and port, as the bastion sees
//! them. The URL the engine connects to is the configured one pointed at that port (PostgreSQL
//! keeps the host name for TLS through `hostaddr`; MariaDB through the TLS host name). A
//! dropped SSH session is opened again on the next connection.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use russh::{
    client,
    keys::{
        self, HashAlg, PrivateKeyWithHashAlg,
        agent::{AgentIdentity, client::AgentClient},
        ssh_key::PublicKey,
    },
};
use tokio::{net::TcpListener, sync::Mutex};

use crate::{
    config::{DatabaseConfig, SshConfig},
    db::{DbError, Target},
};

/// What keeps a tunnel open while its database is served.
pub type Keep = Box<dyn std::any::Any + Send + Sync>;

/// The target to connect to: the configured one, or the same through a tunnel.
pub async fn through_tunnel(entry: &DatabaseConfig) -> Result<(Target, Option<Keep>), DbError> {
    let Some(ssh) = &entry.ssh else {
        return Ok((entry.target.clone(), None));
    };
    let url = match &entry.target {
        Target::Sqlite(_) => {
            return Err(DbError::new(
                "ssh goes with a database server (postgres:// or mysql://), not a SQLite file",
            ));
        }
        Target::Postgres(url) | Target::MariaDb(url) => url,
    };
    let parsed = url::Url::parse(url)
        .map_err(|e| DbError::new(format!("the database URL does not parse: {e}")))?;
    let db_host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| DbError::new("a database reached over ssh needs a host in its URL"))?
        .trim_matches(['[', ']'])
        .to_owned();
    let db_port = parsed.port().unwrap_or(match entry.target {
        Target::Postgres(_) => 5432,
        _ => 3306,
    });
    let tunnel = Tunnel::open(ssh.clone(), db_host.clone(), db_port).await?;
    let mut via = parsed;
    let _ = via.set_port(Some(tunnel.port));
    let target = match entry.target {
        Target::Postgres(_) => {
            // The host name stays for TLS; hostaddr says where to connect.
            via.query_pairs_mut().append_pair("hostaddr", "127.0.0.1");
            Target::Postgres(via.to_string())
        }
        _ => {
            // 127.0.0.1 to connect to; the real host name for TLS.
            via.set_host(Some("127.0.0.1"))
                .map_err(|e| DbError::new(format!("cannot point the URL at the tunnel: {e}")))?;
            via.query_pairs_mut()
                .append_pair(crate::mariadb::TLS_HOST_PARAM, &db_host);
            Target::MariaDb(via.to_string())
        }
    };
    tracing::info!(
        bastion = %format!("{}@{}:{}", ssh.user, ssh.host, ssh.port),
        to = %format!("{db_host}:{db_port}"),
        local_port = tunnel.port,
        "ssh tunnel open"
    );
    Ok((target, Some(Box::new(tunnel))))
}

/// A listening tunnel; dropping it stops the listener.
struct Tunnel {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SSH session a tunnel forwards through, opened again when it drops.
struct Bastion {
    ssh: SshConfig,
    session: Mutex<Option<Arc<client::Handle<HostKeyCheck>>>>,
}

impl Bastion {
    async fn session(&self) -> Result<Arc<client::Handle<HostKeyCheck>>, DbError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref()
            && !session.is_closed()
        {
            return Ok(session.clone());
        }
        let session = Arc::new(connect(&self.ssh).await?);
        *slot = Some(session.clone());
        Ok(session)
    }
}

impl Tunnel {
    async fn open(ssh: SshConfig, db_host: String, db_port: u16) -> Result<Self, DbError> {
        let bastion = Arc::new(Bastion {
            ssh,
            session: Mutex::new(None),
        });
        // Connected now, so that a wrong host key or key is reported at start.
        bastion.session().await?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| DbError::new(format!("cannot listen for the ssh tunnel: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| DbError::new(format!("cannot listen for the ssh tunnel: {e}")))?
            .port();
        let task = tokio::spawn(async move {
            loop {
                let (mut socket, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!(%error, "ssh tunnel: cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let bastion = bastion.clone();
                let db_host = db_host.clone();
                tokio::spawn(async move {
                    let channel = match bastion.session().await {
                        Ok(session) => {
                            session
                                .channel_open_direct_tcpip(
                                    db_host.clone(),
                                    u32::from(db_port),
                                    "127.0.0.1",
                                    u32::from(peer.port()),
                                )
                                .await
                        }
                        Err(error) => {
                            tracing::warn!(%error, "ssh tunnel: cannot reach the bastion");
                            return;
                        }
                    };
                    match channel {
                        Ok(channel) => {
                            let mut stream = channel.into_stream();
                            let _ = tokio::io::copy_bidirectional(&mut socket, &mut stream).await;
                        }
                        Err(error) => tracing::warn!(
                            %error,
                            to = %format!("{db_host}:{db_port}"),
                            "ssh tunnel: the bastion would not open a channel"
                        ),
                    }
                });
            }
        });
        Ok(Self { port, task })
    }
}

/// Checks the bastion's host key against known_hosts; notes why it refused.
struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    refused: Arc<std::sync::Mutex<Option<DbError>>>,
}

impl HostKeyCheck {
    fn refuse(&self, error: DbError) -> Result<bool, russh::Error> {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        Ok(false)
    }

    fn check(&self, key: &PublicKey) -> Result<bool, russh::Error> {
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let shown = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        let known = if self.known_hosts.exists() {
            keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts)
        } else {
            Ok(false)
        };
        match known {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                if let Some(parent) = self.known_hosts.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                match keys::known_hosts::learn_known_hosts_path(
                    &self.host,
                    self.port,
                    key,
                    &self.known_hosts,
                ) {
                    Ok(()) => {
                        tracing::warn!(
                            host = %shown,
                            %fingerprint,
                            file = %self.known_hosts.display(),
                            "ssh: learned a new host key (ssh_accept_new_host)"
                        );
                        Ok(true)
                    }
                    Err(error) => self.refuse(DbError::new(format!(
                        "ssh: cannot record {shown}'s host key in {}: {error}",
                        self.known_hosts.display()
                    ))),
                }
            }
            Ok(false) => self.refuse(
                DbError::new(format!(
                    "ssh: {shown} is not in {} (its {} key is {fingerprint})",
                    self.known_hosts.display(),
                    key.algorithm()
                ))
                .with_hint(format!(
                    "check the fingerprint with the host's owner, then add it (ssh-keyscan -p {} {} >> {}), \
                     or set ssh_accept_new_host = true to record it on first use",
                    self.port,
                    self.host,
                    self.known_hosts.display()
                )),
            ),
            Err(keys::Error::KeyChanged { line }) => self.refuse(
                DbError::new(format!(
                    "ssh: {shown}'s host key CHANGED (line {line} of {} holds another; now {fingerprint}): \
                     someone may be intercepting the connection",
                    self.known_hosts.display()
                ))
                .with_hint(
                    "if the host's key really changed, remove the old line (ssh-keygen -R HOST) and \
                     add the new one after checking it",
                ),
            ),
            Err(error) => self.refuse(DbError::new(format!(
                "ssh: cannot read {}: {error}",
                self.known_hosts.display()
            ))),
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.check(key),
            keys::PublicKeyOrCertificate::Certificate(_) => self.refuse(DbError::new(
                "ssh: the host offered a certificate; only plain host keys checked against known_hosts are supported",
            )),
        }
    }
}

fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".ssh/known_hosts"))
}

/// Opens an SSH session to the bastion and authenticates.
async fn connect(ssh: &SshConfig) -> Result<client::Handle<HostKeyCheck>, DbError> {
    let bastion = format!("{}@{}:{}", ssh.user, ssh.host, ssh.port);
    let known_hosts = ssh
        .known_hosts
        .clone()
        .or_else(default_known_hosts)
        .ok_or_else(|| DbError::new("ssh: no known_hosts file (set ssh_known_hosts)"))?;
    let refused = Arc::new(std::sync::Mutex::new(None));
    let check = HostKeyCheck {
        host: ssh.host.clone(),
        port: ssh.port,
        known_hosts,
        accept_new: ssh.accept_new_host,
        refused: refused.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        inactivity_timeout: None,
        ..client::Config::default()
    });
    let connecting = client::connect(config, (ssh.host.as_str(), ssh.port), check);
    let mut session = match tokio::time::timeout(Duration::from_secs(15), connecting).await {
        Err(_) => {
            return Err(DbError::new(format!(
                "ssh: {bastion} did not answer in 15 s"
            )));
        }
        Ok(Ok(session)) => session,
        Ok(Err(error)) => {
            if let Some(refusal) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(refusal);
            }
            return Err(DbError::new(format!(
                "ssh: cannot connect to {bastion}: {error}"
            )));
        }
    };
    let rsa_hash = session
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let authenticated = match &ssh.key {
        Some(path) => {
            let key = keys::load_secret_key(path, None).map_err(|e| {
                DbError::new(format!("ssh: cannot load the key {}: {e}", path.display())).with_hint(
                    "an encrypted key goes in the SSH agent (ssh-add), not in the config: leave \
                     ssh_key out to use the agent",
                )
            })?;
            let hash = if key.algorithm().is_rsa() {
                rsa_hash
            } else {
                None
            };
            session
                .authenticate_publickey(
                    ssh.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(|e| DbError::new(format!("ssh: authentication failed: {e}")))?
                .success()
        }
        None => {
            let mut agent = AgentClient::connect_env().await.map_err(|e| {
                DbError::new(format!("ssh: no SSH agent ({e})")).with_hint(
                    "start an agent and ssh-add the key (SSH_AUTH_SOCK must reach the server), or \
                     set ssh_key to a key file",
                )
            })?;
            let identities = agent
                .request_identities()
                .await
                .map_err(|e| DbError::new(format!("ssh: the agent did not list its keys: {e}")))?;
            let mut accepted = false;
            for identity in identities {
                let AgentIdentity::PublicKey { key, .. } = identity else {
                    continue;
                };
                let hash = if key.algorithm().is_rsa() {
                    rsa_hash
                } else {
                    None
                };
                if let Ok(result) = session
                    .authenticate_publickey_with(ssh.user.clone(), key, hash, &mut agent)
                    .await
                    && result.success()
                {
                    accepted = true;
                    break;
                }
            }
            accepted
        }
    };
    if !authenticated {
        return Err(DbError::new(format!(
            "ssh: {bastion} accepted none of the keys offered ({})",
            match &ssh.key {
                Some(path) => format!("the key file {}", path.display()),
                None => "the SSH agent's keys".to_owned(),
            }
        ))
        .with_hint("add the public key to the user's ~/.ssh/authorized_keys on the bastion"));
    }
    Ok(session)
}
