//! The cluster's credentials: a CA generated on first start, the admin and join tokens, and
//! this instance's TLS serving certificate signed by that CA.
//!
//! The CA and tokens live in the store (created once, atomically), so every API server of an
//! etcd-backed cluster serves under the same CA and accepts the same tokens; each instance
//! signs its own serving certificate at start, for the addresses it answers on.

use std::{net::IpAddr, sync::Arc};

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use serde::{Deserialize, Serialize};
use skiff_store::{Precondition, Store, TxnOutcome, Write};

const CREDENTIALS_KEY: &str = "/system/credentials";
const CA_NAME: &str = "skiff-ca";

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub ca_cert_pem: String,
    ca_key_pem: String,
    pub admin_token: String,
    pub join_token: String,
}

pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    Ok(params)
}

impl Credentials {
    /// Reads the cluster's credentials, creating them if this is the cluster's first start.
    pub async fn load_or_create(store: &Arc<dyn Store>) -> anyhow::Result<Credentials> {
        loop {
            if let Some(kv) = store.get(CREDENTIALS_KEY).await? {
                return serde_json::from_slice(&kv.value).context("reading the stored credentials");
            }
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            let fresh = Credentials {
                ca_cert_pem: cert.pem(),
                ca_key_pem: key.serialize_pem(),
                admin_token: random_token(),
                join_token: random_token(),
            };
            let outcome = store
                .txn(
                    vec![Precondition::Absent {
                        key: CREDENTIALS_KEY.into(),
                    }],
                    vec![Write::Put {
                        key: CREDENTIALS_KEY.into(),
                        value: serde_json::to_vec(&fresh)?,
                    }],
                )
                .await?;
            if let TxnOutcome::Committed { .. } = outcome {
                tracing::info!("generated the cluster CA and tokens (first start)");
                return Ok(fresh);
            }
            // Another instance created them first: read theirs.
        }
    }

    /// A TLS server configuration with a certificate for `names` (DNS names or IPs), signed
    /// by the cluster CA.
    pub fn server_config(&self, names: &[String]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        // The issuer only needs the CA's name and key; rebuilding it from the same parameters
        // and key signs exactly as the stored certificate would.
        let ca = ca_params()?.self_signed(&ca_key)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "skiff-control");
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        for name in names {
            params.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            });
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let chain = vec![cert.der().clone()];
        let private = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| anyhow::anyhow!("serving key: {e}"))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
        Ok(Arc::new(config))
    }
}

/// The names this machine answers on: localhost, its hostname and every IPv4 address of its
/// interfaces (so nodes reaching it over a lab bridge verify it too), plus `extra`.
pub fn local_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Ok(host) = nix::unistd::gethostname() {
        if let Some(h) = host.to_str() {
            names.push(h.to_string());
        }
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if let Some(ip) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
                names.push(ip.ip().to_string());
            }
        }
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}
