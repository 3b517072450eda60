//! The OS keyring, where OAuth tokens are kept when there is one: the Secret Service on Linux
//! and the BSDs (GNOME Keyring, KWallet, KeePassXC), the login Keychain on macOS, the
//! Credential Manager on Windows. Each server's secret is an entry of service
//! [`SERVICE`] named by the server's URL.
//!
//! Every call runs on a blocking thread under [`KEYRING_TIMEOUT`]: a locked keyring may show an
//! unlock dialog (which a person needs time to answer) or, with no one to show it to, never
//! answer at all.

use std::{sync::Arc, time::Duration};

use keyring_core::{CredentialStore, Entry, Error};
use tokio::sync::OnceCell;

/// The service name of every entry `mcp` keeps.
pub const SERVICE: &str = "mcp-toolkit";

/// How long one keyring call may take (an unlock dialog included) before it counts as failed.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether tokens go to the OS keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenStore {
    /// The OS keyring when one answers, else the token file.
    Auto,
    /// The OS keyring only: without one, logging in fails.
    Keyring,
    /// The token file only.
    File,
}

/// The OS keyring, opened on first use (connecting to it costs a D-Bus round trip on Linux,
/// which a run that needs no token does not pay).
#[derive(Clone)]
pub struct Keyring {
    required: bool,
    store: Arc<OnceCell<Result<Arc<CredentialStore>, String>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("required", &self.required)
            .finish()
    }
}

/// A keyring call that failed: the keyring's answer, said for a person.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyringError(String);

impl Keyring {
    /// The platform's keyring; `required` makes its absence an error rather than a reason to
    /// use the file.
    pub fn os(required: bool) -> Self {
        Self {
            required,
            store: Arc::default(),
        }
    }

    /// The platform's keyring by name, for messages.
    pub fn name() -> &'static str {
        if cfg!(target_os = "macos") {
            "the macOS Keychain"
        } else if cfg!(windows) {
            "the Windows Credential Manager"
        } else {
            "the Secret Service keyring"
        }
    }

    /// The opened store, `None` when this machine has no keyring to open (and none is required).
    async fn store(&self) -> Result<Option<Arc<CredentialStore>>, KeyringError> {
        let opened = self
            .store
            .get_or_init(|| async {
                let opening = tokio::task::spawn_blocking(open_store);
                match tokio::time::timeout(KEYRING_TIMEOUT, opening).await {
                    Ok(Ok(opened)) => opened,
                    Ok(Err(e)) => Err(format!("opening it failed: {e}")),
                    Err(_) => Err(format!(
                        "it did not answer in {} s",
                        KEYRING_TIMEOUT.as_secs()
                    )),
                }
            })
            .await;
        match opened {
            Ok(store) => Ok(Some(store.clone())),
            Err(why) if self.required => Err(KeyringError(format!(
                "{} cannot be used here ({why}); `--token-store auto` keeps tokens in the token file when there is no keyring",
                Self::name()
            ))),
            Err(why) => {
                tracing::debug!("no OS keyring ({why}); tokens go to the token file");
                Ok(None)
            }
        }
    }

    /// Why the keyring cannot be used, after [`Self::store`] found none.
    fn unavailable(&self) -> KeyringError {
        let why = match self.store.get() {
            Some(Err(why)) => why.as_str(),
            _ => "not opened",
        };
        KeyringError(format!(
            "{} is not available now ({why}); start or unlock it, or log in again with `--token-store file`",
            Self::name()
        ))
    }

    /// Whether a keyring must be used.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether a keyring answers here.
    pub async fn available(&self) -> Result<bool, KeyringError> {
        Ok(self.store().await?.is_some())
    }

    /// Keeps `secret` for `user`: `Ok(false)` when there is no keyring to keep it in.
    pub async fn set(&self, user: &str, secret: String) -> Result<bool, KeyringError> {
        let Some(store) = self.store().await? else {
            return Ok(false);
        };
        let user = user.to_owned();
        call(move || Entry::new_in_store(&store, SERVICE, &user)?.set_password(&secret)).await?;
        Ok(true)
    }

    /// The secret kept for `user`, `None` when there is none (or no keyring).
    pub async fn get(&self, user: &str) -> Result<Option<String>, KeyringError> {
        let Some(store) = self.store().await? else {
            return Err(self.unavailable());
        };
        let user = user.to_owned();
        match call(move || Entry::new_in_store(&store, SERVICE, &user)?.get_password()).await {
            Ok(secret) => Ok(Some(secret)),
            Err(Call::Keyring(Error::NoEntry)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets the secret kept for `user`; one that is not there is no error, no keyring is.
    pub async fn delete(&self, user: &str) -> Result<(), KeyringError> {
        let Some(store) = self.store().await? else {
            return Err(self.unavailable());
        };
        let user = user.to_owned();
        match call(move || Entry::new_in_store(&store, SERVICE, &user)?.delete_credential()).await {
            Ok(()) | Err(Call::Keyring(Error::NoEntry)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// How a keyring call ended badly.
enum Call {
    Keyring(Error),
    Lost(String),
}

impl From<Call> for KeyringError {
    fn from(call: Call) -> Self {
        KeyringError(match call {
            Call::Keyring(Error::NoStorageAccess(e)) => format!(
                "{} is locked or refused access ({e}); unlock it, or use `--token-store file`",
                Keyring::name()
            ),
            Call::Keyring(Error::TooLong(what, limit)) => format!(
                "{} keeps at most {limit} bytes of {what}, and these tokens are longer",
                Keyring::name()
            ),
            Call::Keyring(e) => format!("{}: {e}", Keyring::name()),
            Call::Lost(why) => format!("{}: {why}", Keyring::name()),
        })
    }
}

async fn call<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Call> {
    match tokio::time::timeout(KEYRING_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(done)) => done.map_err(Call::Keyring),
        Ok(Err(e)) => Err(Call::Lost(e.to_string())),
        Err(_) => Err(Call::Lost(format!(
            "no answer in {} s (a locked keyring with no one to unlock it?)",
            KEYRING_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(not(any(target_os = "macos", target_os = "ios", windows, target_os = "android")))]
fn open_store() -> Result<Arc<CredentialStore>, String> {
    dbus_secret_service_keyring_store::Store::new()
        .map(|store| store as Arc<CredentialStore>)
        .map_err(|e| e.to_string())
}

#[cfg(target_os = "macos")]
fn open_store() -> Result<Arc<CredentialStore>, String> {
    apple_native_keyring_store::keychain::Store::new()
        .map(|store| store as Arc<CredentialStore>)
        .map_err(|e| e.to_string())
}

#[cfg(windows)]
fn open_store() -> Result<Arc<CredentialStore>, String> {
    windows_native_keyring_store::Store::new()
        .map(|store| store as Arc<CredentialStore>)
        .map_err(|e| e.to_string())
}

#[cfg(any(target_os = "ios", target_os = "android"))]
fn open_store() -> Result<Arc<CredentialStore>, String> {
    Err("this platform's keyring is not supported".to_owned())
}
