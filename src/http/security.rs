//! TLS and basic auth for the HTTP endpoint, with exporter-toolkit's semantics: when
//! `[http.tls_server_config]` is set only TLS is served (with `client_ca_file`, clients
//! must present a certificate that CA signed); when `[http.basic_auth_users]` has users,
//! every route asks for one of them. Both are read at start and on every reload; a bad
//! file or hash stops the start or refuses the reload, naming the key and the file.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use axum::http::HeaderValue;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::auth_limit::FailureLimiter;
use crate::config::{Config, TlsFiles};

/// How many verified credentials are remembered, so that a scrape every few seconds does
/// not cost a bcrypt verification (tens of milliseconds of CPU) each time.
const VERIFIED_CACHE: usize = 64;

/// The cost of the stand-in hash when no user's hash says its cost.
const DEFAULT_COST: u32 = bcrypt::DEFAULT_COST;

/// What the running config asks of every connection and request.
pub struct Security {
    pub tls: Option<TlsAcceptor>,
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
    /// A hash of the users' highest cost, verified against for an unknown user: without
    /// it, an unknown name is refused in microseconds and a known one in tens of
    /// milliseconds, and the timing tells which user names exist.
    stand_in: String,
    /// Wrong passwords per client address.
    failures: FailureLimiter,
    /// One bcrypt at a time: a flood of wrong passwords from many addresses takes at most
    /// one core, and the async workers none.
    bcrypt_turn: tokio::sync::Semaphore,
}

/// What [`Security::check`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Let the request through.
    Allowed,
    /// No or wrong credentials: 401.
    Refused,
    /// Too many wrong passwords from this address: 429, try again after this long.
    Throttled(std::time::Duration),
}

/// The security in force, swapped whole on reload.
pub type SharedSecurity = Arc<RwLock<Arc<Security>>>;

/// The cost a bcrypt hash was made with (`$2b$12$...`: 12).
fn cost_of(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

impl Security {
    /// Plain HTTP, no authentication.
    pub fn open() -> Security {
        Security::with(None, BTreeMap::new())
    }

    fn with(tls: Option<TlsAcceptor>, users: BTreeMap<String, String>) -> Security {
        let stand_in = if users.is_empty() {
            String::new()
        } else {
            let cost = users
                .values()
                .filter_map(|h| cost_of(h))
                .max()
                .unwrap_or(DEFAULT_COST);
            bcrypt::hash("tunnelkeeper: no such user", cost)
                .expect("bcrypt hashes at a cost a configured hash already has")
        };
        Security {
            tls,
            users,
            verified: Mutex::new(HashSet::new()),
            stand_in,
            failures: FailureLimiter::default(),
            bcrypt_turn: tokio::sync::Semaphore::new(1),
        }
    }

    /// Reads the TLS files `config` names.
    pub fn load(config: &Config) -> Result<Security, String> {
        let tls = config
            .tls
            .as_ref()
            .map(|files| server_config(files).map(|c| TlsAcceptor::from(Arc::new(c))))
            .transpose()?;
        Ok(Security::with(tls, config.basic_auth_users.clone()))
    }

    /// Whether requests need credentials.
    pub fn asks_for_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks a request's `Authorization` header from `peer`: remembered credentials at
    /// once; others with bcrypt off the async workers, one at a time, within the peer's
    /// allowance of verifications.
    pub async fn check(
        self: Arc<Self>,
        peer: Option<IpAddr>,
        authorization: Option<HeaderValue>,
    ) -> AuthOutcome {
        if self.users.is_empty() {
            return AuthOutcome::Allowed;
        }
        let Some((user, password)) = credentials(authorization.as_ref()) else {
            return AuthOutcome::Refused;
        };
        if self.remembered(&user, &password) {
            return AuthOutcome::Allowed;
        }
        let now = std::time::Instant::now();
        if let Some(ip) = peer {
            if let Err(wait) = self.failures.take(ip, now) {
                return AuthOutcome::Throttled(wait);
            }
        }
        let Ok(_turn) = self.bcrypt_turn.acquire().await else {
            return AuthOutcome::Refused;
        };
        let security = self.clone();
        let ok = tokio::task::spawn_blocking(move || security.verify(&user, &password))
            .await
            .unwrap_or(false);
        if ok {
            if let Some(ip) = peer {
                self.failures.give_back(ip, std::time::Instant::now());
            }
            AuthOutcome::Allowed
        } else {
            AuthOutcome::Refused
        }
    }

    /// Checks an `Authorization` header against the users, without the brake (slow: call
    /// off the async workers).
    pub fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, password)) = credentials(authorization) else {
            return false;
        };
        self.remembered(&user, &password) || self.verify(&user, &password)
    }

    fn remembered(&self, user: &str, password: &str) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.contains(&format!("{user}\0{password}"))
    }

    /// Runs bcrypt, against the stand-in hash for an unknown user, and remembers a success.
    fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.stand_in.as_str(), false),
        };
        if !(bcrypt::verify(password, hash).unwrap_or(false) && known) {
            return false;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(format!("{user}\0{password}"));
        true
    }
}

/// The user and password of a `Basic` header.
fn credentials(authorization: Option<&HeaderValue>) -> Option<(String, String)> {
    authorization
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
        Security::with(
            None,
            users
                .iter()
                .map(|(u, h)| (u.to_string(), h.to_string()))
                .collect(),
        )
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

    /// The median time of `runs` refusals of `credentials`.
    fn median_refusal(s: &Security, credentials: &str, runs: usize) -> std::time::Duration {
        let mut times: Vec<_> = (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                assert!(!s.allows(Some(&basic(credentials))));
                t.elapsed()
            })
            .collect();
        times.sort();
        times[runs / 2]
    }

    #[test]
    fn an_unknown_user_costs_what_a_known_one_does() {
        let hash = bcrypt::hash("s3cret", 8).unwrap();
        let s = with_users(&[("noc", &hash)]);
        assert_eq!(cost_of(&s.stand_in), Some(8));
        let known = median_refusal(&s, "noc:wrong", 5);
        let unknown = median_refusal(&s, "nobody:wrong", 5);
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "known user {known:?}, unknown user {unknown:?}"
        );
        assert!(
            !s.allows(Some(&basic("nobody:tunnelkeeper: no such user"))),
            "the stand-in's own password lets no one in"
        );
    }

    #[tokio::test]
    async fn wrong_passwords_are_braked_per_address_and_remembered_successes_are_not() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let s = Arc::new(with_users(&[("noc", &hash)]));
        let guesser: IpAddr = "192.0.2.9".parse().unwrap();
        let noc: IpAddr = "192.0.2.10".parse().unwrap();
        let check = |ip, c: &str| s.clone().check(Some(ip), Some(basic(c)));
        assert_eq!(check(noc, "noc:s3cret").await, AuthOutcome::Allowed);
        for _ in 0..5 {
            assert_eq!(check(guesser, "noc:guess").await, AuthOutcome::Refused);
        }
        match check(guesser, "noc:guess").await {
            AuthOutcome::Throttled(wait) => assert!(wait.as_secs_f64() > 1.0, "{wait:?}"),
            other => panic!("expected the brake, got {other:?}"),
        }
        // Remembered credentials pass even from the braked address; others do not.
        assert_eq!(check(guesser, "noc:s3cret").await, AuthOutcome::Allowed);
        assert!(matches!(
            check(guesser, "noc:other").await,
            AuthOutcome::Throttled(_)
        ));
        for _ in 0..20 {
            assert_eq!(check(noc, "noc:s3cret").await, AuthOutcome::Allowed);
        }
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
