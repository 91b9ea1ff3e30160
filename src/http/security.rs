//! TLS and basic auth for the HTTP endpoint, with exporter-toolkit's semantics: when
//! `[http.tls_server_config]` is set only TLS is served (with `client_ca_file`, clients
//! must present a certificate that CA signed); when `[http.basic_auth_users]` has users,
//! every route asks for one of them. Both are read at start and on every reload; a bad
//! file or hash stops the start or refuses the reload, naming the key and the file.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use axum::http::HeaderValue;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsFiles};

/// How many verified credentials are remembered, so that a scrape every few seconds does
/// not cost a bcrypt verification (tens of milliseconds of CPU) each time.
const VERIFIED_CACHE: usize = 64;

/// What the running config asks of every connection and request.
pub struct Security {
    pub tls: Option<TlsAcceptor>,
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
}

/// The security in force, swapped whole on reload.
pub type SharedSecurity = Arc<RwLock<Arc<Security>>>;

impl Security {
    /// Plain HTTP, no authentication.
    pub fn open() -> Security {
        Security {
            tls: None,
            users: BTreeMap::new(),
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Reads the TLS files `config` names.
    pub fn load(config: &Config) -> Result<Security, String> {
        let tls = config
            .tls
            .as_ref()
            .map(|files| server_config(files).map(|c| TlsAcceptor::from(Arc::new(c))))
            .transpose()?;
        Ok(Security {
            tls,
            users: config.basic_auth_users.clone(),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether requests need credentials.
    pub fn asks_for_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header against the users (slow: call off the async
    /// workers).
    pub fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
        else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let remembered = format!("{user}\0{password}");
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.contains(&remembered) {
            return true;
        }
        drop(verified);
        if !bcrypt::verify(&password, hash).unwrap_or(false) {
            return false;
        }
        verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(remembered);
        true
    }
}

/// Starts the shared state with `security`.
pub fn shared(security: Security) -> SharedSecurity {
    Arc::new(RwLock::new(Arc::new(security)))
}

fn read_failed(key: &str, path: &Path, what: impl std::fmt::Display) -> String {
    format!("http.tls_server_config.{key} {}: {what}", path.display())
}

fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_failed(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_failed(key, path, e))?;
    if certs.is_empty() {
        return Err(read_failed(key, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs = certificates("cert_file", &files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| read_failed("key_file", &files.key_file, e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client_ca_file", path)? {
                roots
                    .add(cert)
                    .map_err(|e| read_failed("client_ca_file", path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| read_failed("client_ca_file", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "http.tls_server_config.cert_file {} and key_file {}: {e}",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_users(users: &[(&str, &str)]) -> Security {
        Security {
            tls: None,
            users: users
                .iter()
                .map(|(u, h)| (u.to_string(), h.to_string()))
                .collect(),
            verified: Mutex::new(HashSet::new()),
        }
    }

    fn basic(credentials: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn basic_auth_takes_the_right_password_only() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let s = with_users(&[("noc", &hash)]);
        assert!(s.allows(Some(&basic("noc:s3cret"))));
        assert!(s.allows(Some(&basic("noc:s3cret"))), "remembered");
        assert!(!s.allows(Some(&basic("noc:wrong"))));
        assert!(!s.allows(Some(&basic("other:s3cret"))));
        assert!(!s.allows(None));
        assert!(!s.allows(Some(&HeaderValue::from_static("Bearer x"))));
        assert!(Security::open().allows(None), "no users: open");
    }

    #[test]
    fn a_missing_certificate_file_names_the_key_and_the_file() {
        let files = TlsFiles {
            cert_file: "/nonexistent/tls.crt".into(),
            key_file: "/nonexistent/tls.key".into(),
            client_ca_file: None,
        };
        let Err(e) = server_config(&files) else {
            panic!("loaded a missing file")
        };
        assert!(
            e.starts_with("http.tls_server_config.cert_file /nonexistent/tls.crt: "),
            "{e}"
        );
    }
}
