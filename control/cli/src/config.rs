//! Finding the client config and showing it (`skiff config view`).

use std::path::{Path, PathBuf};

use anyhow::bail;
use skiff_client::{Client, Config};

/// What to do when there is no usable config.
const HINT: &str =
    "pass --config /var/lib/skiff-control/admin.conf (skiff-control writes it into its --data-dir), or run `cargo xtask up`";

/// `--config` (or `SKIFF_CONFIG`, which clap reads into it), else `~/.config/skiff/config`.
pub fn path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".config/skiff/config")),
        _ => bail!("no config: HOME is not set; {HINT}"),
    }
}

pub fn load(path: &Path) -> anyhow::Result<Config> {
    if !path.exists() {
        bail!("no config at {}: {HINT}", path.display());
    }
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}; {HINT}"))
}

pub fn client(path: &Path) -> anyhow::Result<Client> {
    let config = load(path)?;
    Client::new(&config).map_err(|e| anyhow::anyhow!("{}: {e}; {HINT}", path.display()))
}

/// The config as JSON; unless `raw`, with the token and the CA left out, so it can be
/// pasted into a bug report.
pub fn view(config: &Config, raw: bool) -> String {
    let mut shown = config.clone();
    if !raw {
        shown.token = "REDACTED".into();
        if shown.certificate_authority_data.is_some() {
            shown.certificate_authority_data = Some("DATA+OMITTED".into());
        }
    }
    serde_json::to_string_pretty(&shown).expect("a config serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_hides_the_token_unless_raw() {
        let config = Config::parse(
            r#"{"server": "https://127.0.0.1:6443", "certificateAuthorityData": "PEM", "token": "s3cret"}"#,
        )
        .unwrap();
        let shown = view(&config, false);
        assert!(
            !shown.contains("s3cret") && !shown.contains("PEM"),
            "{shown}"
        );
        assert!(shown.contains(r#""token": "REDACTED""#), "{shown}");
        assert!(view(&config, true).contains("s3cret"));
    }

    #[test]
    fn a_missing_config_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(&dir.path().join("config")).unwrap_err().to_string();
        assert!(e.starts_with("no config at "), "{e}");
        assert!(
            e.contains("--config /var/lib/skiff-control/admin.conf"),
            "{e}"
        );
        assert!(e.contains("cargo xtask up"), "{e}");
        std::fs::write(dir.path().join("config"), "{").unwrap();
        let e = load(&dir.path().join("config")).unwrap_err().to_string();
        assert!(e.contains("expected {\"server\""), "{e}");
        assert!(e.contains("cargo xtask up"), "{e}");
    }
}
