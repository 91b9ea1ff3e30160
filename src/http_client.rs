//! One small HTTP/1.1 client over hyper, for the two places the daemon is a client: the
//! Alertmanager sink and `tunnelkeeper status`/`healthcheck`: `http://`, or `https://` with
//! a TLS client config, optional basic auth, a deadline on the whole exchange, and errors
//! worded for a log line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// What came back.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// How to reach the server beyond its address.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Speak TLS with this client config (an `https://` base needs it).
    pub tls: Option<Arc<ClientConfig>>,
    /// An `Authorization` header value, such as `Basic ...`.
    pub authorization: Option<String>,
}

/// Builds a TLS client config that trusts the CAs in `ca_file`, or, with `insecure`,
/// any certificate at all (for a health check of the daemon on its own host).
pub fn tls_client(ca_file: Option<&Path>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let ca_file =
            ca_file.ok_or("TLS needs a CA file to verify the server (or --tls-insecure)")?;
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate (still checking the handshake's signatures).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub use tunnelkeeper_core::config::split_url;

/// Sends one request to `base` + `path` and reads the whole answer within `deadline`.
/// `body` is a JSON document for a POST, `None` for a GET.
pub async fn call(
    base: &str,
    path: &str,
    json_body: Option<String>,
    deadline: Duration,
    options: &CallOptions,
) -> Result<Answer, String> {
    let (tls, authority, prefix) = split_url(base)?;
    let request = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let builder = hyper::Request::builder()
            .uri(format!("{prefix}{path}"))
            .header("host", authority);
        let builder = match &options.authorization {
            Some(value) => builder.header("authorization", value),
            None => builder,
        };
        let request = match json_body {
            Some(json) => builder
                .method("POST")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(json))),
            None => builder.method("GET").body(Full::new(Bytes::new())),
        }
        .map_err(|e| e.to_string())?;
        if !tls {
            return exchange(stream, request, authority).await;
        }
        let config = options
            .tls
            .clone()
            .ok_or_else(|| format!("{base}: https needs a TLS client config"))?;
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| format!("{authority}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {authority}: {e}"))?;
        exchange(stream, request, authority).await
    };
    tokio::time::timeout(deadline, request).await.map_err(|_| {
        format!(
            "{authority}: no answer within {}",
            humantime::format_duration(deadline)
        )
    })?
}

async fn exchange<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
    authority: &str,
) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{authority} did not answer HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer from {authority}: {e}"))?
        .to_bytes();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_prefix() {
        assert_eq!(
            split_url("http://127.0.0.1:9093"),
            Ok((false, "127.0.0.1:9093", ""))
        );
        assert_eq!(split_url("http://am:9093/"), Ok((false, "am:9093", "")));
        assert_eq!(
            split_url("https://am:9093/alertmanager"),
            Ok((true, "am:9093", "/alertmanager"))
        );
        assert!(split_url("ftp://am:9093").is_err());
    }
}
