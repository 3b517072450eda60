//! TLS to PostgreSQL with libpq's meaning of `sslmode` (feature `postgres`; mcp-sql's connections
//! and mcp-docs's shared index use it), so URLs people already use behave the
//! same: `disable` is plain; `prefer` (the default) and `require` encrypt without checking the
//! certificate, as libpq does; `verify-ca` and `verify-full` check it against the system's trust
//! store plus `sslrootcert`, and check the host name (both: rustls always does). `require` with
//! `sslrootcert` verifies too, as libpq does. tokio-postgres knows neither `verify-*` nor
//! `sslrootcert`, so both are taken out of the URL here.

use std::{
    path::{Path, PathBuf},
    str::FromStr as _,
    sync::Arc,
};

use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A connection setting that cannot be used (the URL, or TLS): what is wrong and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl TlsError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A `postgres://` URL as libpq reads it: the TLS parameters taken out ([`TlsOptions`]), the
/// password from `PGPASSWORD` when the URL has none (to keep it out of config files), a
/// 10-second connect timeout unless the URL sets one, and `application` as the name the server
/// shows.
pub fn config(
    url: &str,
    application: &str,
) -> Result<(tokio_postgres::Config, TlsOptions), TlsError> {
    let tls = TlsOptions::from_url(url)?;
    let mut config = tokio_postgres::Config::from_str(&tls.url).map_err(|e| {
        TlsError::new(format!("invalid PostgreSQL URL: {e}"))
            .with_hint("the form is postgres://user[:password]@host[:port]/database")
    })?;
    if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name(application);
    config.ssl_mode(tls.mode);
    Ok((config, tls))
}

/// What the URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The URL without the parameters tokio-postgres does not understand.
    pub url: String,
    /// The `sslmode` tokio-postgres is given.
    pub mode: SslMode,
    /// Whether the server's certificate must be verified.
    pub verify: bool,
    /// `sslrootcert`: CA certificates trusted beside the system's.
    pub root_cert: Option<PathBuf>,
}

impl TlsOptions {
    /// Splits libpq's TLS parameters out of a `postgres://` URL.
    pub fn from_url(url: &str) -> Result<Self, TlsError> {
        let plain = |url: &str| Self {
            url: url.to_owned(),
            mode: SslMode::Prefer,
            verify: false,
            root_cert: None,
        };
        // Several hosts (`h1,h2`) are valid for libpq but not a URL the url crate accepts:
        // leave such a URL to tokio-postgres as it is.
        let Ok(mut parsed) = url::Url::parse(url) else {
            return Ok(plain(url));
        };
        let mut mode = None;
        let mut root_cert = None;
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter_map(|(key, value)| match key.as_ref() {
                "sslmode" => {
                    mode = Some(value.into_owned());
                    None
                }
                "sslrootcert" => {
                    root_cert = Some(PathBuf::from(value.as_ref()));
                    None
                }
                _ => Some((key.into_owned(), value.into_owned())),
            })
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        let (mode, verify) =
            match mode.as_deref().unwrap_or("prefer") {
                "disable" => (SslMode::Disable, false),
                "allow" | "prefer" => (SslMode::Prefer, root_cert.is_some()),
                "require" => (SslMode::Require, root_cert.is_some()),
                "verify-ca" | "verify-full" => (SslMode::Require, true),
                other => {
                    return Err(TlsError::new(format!("unknown sslmode {other:?}")).with_hint(
                    "use disable, prefer, require, verify-ca or verify-full (as with libpq)",
                ));
                }
            };
        Ok(Self {
            url: parsed.to_string(),
            mode,
            verify,
            root_cert,
        })
    }

    /// The connector: verifying (system roots plus `sslrootcert`) or encrypt-only.
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new(format!("TLS setup failed: {e}")))?
            .dangerous();
        let config = if self.verify {
            let extra = match &self.root_cert {
                Some(path) => read_certificates(path)?,
                None => Vec::new(),
            };
            let verifier =
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
                    .map_err(|e| TlsError::new(format!("TLS setup failed: {e}")))?;
            builder.with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            builder.with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        };
        Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        TlsError::new(format!("cannot read sslrootcert {}: {e}", path.display()))
            .with_hint("sslrootcert names a PEM file of CA certificates")
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certificates.is_empty() {
        return Err(unreadable(&"no certificate in it"));
    }
    Ok(certificates)
}

/// libpq's `prefer` and `require`: the connection is encrypted and the handshake's signatures
/// are checked, but the certificate is not (anyone can present one). `verify-full` is what
/// authenticates the server.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_the_url() {
        let options =
            TlsOptions::from_url("postgres://u@db.example:5432/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x")
                .unwrap();
        assert_eq!(
            options.url,
            "postgres://u@db.example:5432/shop?application_name=x"
        );
        assert_eq!(options.mode, SslMode::Require);
        assert!(options.verify);
        assert_eq!(options.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));

        let default = TlsOptions::from_url("postgres://u@127.0.0.1/shop").unwrap();
        assert_eq!(default.url, "postgres://u@127.0.0.1/shop");
        assert_eq!(default.mode, SslMode::Prefer);
        assert!(!default.verify);

        let require = TlsOptions::from_url("postgresql://u@h/d?sslmode=require").unwrap();
        assert_eq!((require.mode, require.verify), (SslMode::Require, false));
        let pinned =
            TlsOptions::from_url("postgresql://u@h/d?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert!(
            pinned.verify,
            "require with a root certificate verifies, as in libpq"
        );
        let off = TlsOptions::from_url("postgresql://u@h/d?sslmode=disable").unwrap();
        assert_eq!(off.mode, SslMode::Disable);
        assert!(TlsOptions::from_url("postgresql://u@h/d?sslmode=maybe").is_err());
    }

    #[test]
    fn a_missing_root_certificate_is_a_clear_error() {
        let options = TlsOptions::from_url(
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap();
        let error = options.connector().err().unwrap();
        assert!(
            error
                .message
                .contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{error}"
        );
    }
}
