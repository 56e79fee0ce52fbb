//! The client config file that `skiff-control` writes as `<data-dir>/admin.conf`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;

/// Where the API is and how to trust and talk to it. JSON as written by `skiff-control`;
/// YAML is read too, for configs people write by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// `https://HOST:PORT` of the API server.
    pub server: String,
    /// The cluster CA certificate, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// A file holding the cluster CA certificate (relative to the config file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
    /// The bearer token: the admin token, a node token, or the join token.
    pub token: String,
}

impl Config {
    /// Reads and checks a config file. A relative `certificateAuthority` is resolved against
    /// the file's folder, so a config keeps working from any working directory.
    pub fn load(path: &Path) -> Result<Config, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClientError::Config(format!("reading {}: {e}", path.display())))?;
        let mut config = Config::parse(&text)
            .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
        if let Some(ca) = &mut config.certificate_authority {
            if ca.is_relative() {
                *ca = path.parent().unwrap_or(Path::new(".")).join(&*ca);
            }
        }
        Ok(config)
    }

    /// Parses a config's text and checks that it can work.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = serde_yaml::from_str(text).map_err(|e| {
            format!(
                "{e}: expected {{\"server\": \"https://HOST:PORT\", \"certificateAuthorityData\": \"<PEM>\", \"token\": \"...\"}}"
            )
        })?;
        if !config.server.starts_with("https://") {
            // The token is a bearer secret: never send it in the clear.
            return Err(format!(
                "server: {:?}: expected an https:// URL such as https://127.0.0.1:6443",
                config.server
            ));
        }
        if config.certificate_authority_data.is_none() && config.certificate_authority.is_none() {
            return Err(
                "no CA: expected certificateAuthorityData (PEM) or certificateAuthority (a file)"
                    .into(),
            );
        }
        if config.token.trim().is_empty() {
            return Err("token: empty: expected the admin token or a node token".into());
        }
        Ok(config)
    }

    /// The CA certificate's PEM text, from the config itself or from its file.
    pub fn ca_pem(&self) -> Result<String, ClientError> {
        match (
            &self.certificate_authority_data,
            &self.certificate_authority,
        ) {
            (Some(pem), _) => Ok(pem.clone()),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                ClientError::Config(format!("certificateAuthority {}: {e}", path.display()))
            }),
            (None, None) => Err(ClientError::Config(
                "no CA: expected certificateAuthorityData or certificateAuthority".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_skiff_control_writes_and_yaml() {
        let json = r#"{"server": "https://127.0.0.1:6443", "certificateAuthorityData": "PEM", "token": "t"}"#;
        let c = Config::parse(json).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(c.ca_pem().unwrap(), "PEM");
        let yaml = "server: https://10.0.0.1:6443\ncertificateAuthority: ca.crt\ntoken: t\n";
        assert_eq!(
            Config::parse(yaml).unwrap().certificate_authority,
            Some(PathBuf::from("ca.crt"))
        );
    }

    #[test]
    fn says_what_is_wrong() {
        let e = Config::parse(
            r#"{"server": "http://x:1", "certificateAuthorityData": "P", "token": "t"}"#,
        )
        .unwrap_err();
        assert!(e.contains("expected an https:// URL"), "{e}");
        let e = Config::parse(r#"{"server": "https://x:1", "token": "t"}"#).unwrap_err();
        assert!(e.contains("no CA"), "{e}");
        let e = Config::parse(r#"{"sever": "https://x:1"}"#).unwrap_err();
        assert!(e.contains("unknown field `sever`"), "{e}");
    }

    #[test]
    fn a_relative_ca_file_is_next_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "PEM FROM FILE").unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "server: https://127.0.0.1:6443\ncertificateAuthority: ca.crt\ntoken: t\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.ca_pem().unwrap(), "PEM FROM FILE");
        let missing = Config::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("reading"), "{missing}");
    }
}
