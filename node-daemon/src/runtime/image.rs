//! The project's own container image, `skiff-probe:latest`: the static probe binary and a
//! static busybox (a shell and the usual tools) and nothing else. No registry is reachable
//! from the lab, so `skiff-node image build` imports it into the local engine from a tarball
//! made here. The embedded runtime knows the same image's entrypoint without any image.

use std::path::{Path, PathBuf};

use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt as _;

use super::DockerRuntime;

/// The image's name as pods write it (any tag).
pub const PROBE_IMAGE: &str = "skiff-probe";
/// The reference the node builds and runs.
pub const PROBE_IMAGE_REF: &str = "skiff-probe:latest";
/// The image's default command (its CMD) when a pod gives no args.
pub const PROBE_IMAGE_CMD: [&str; 7] =
    ["serve", "--http", "8080", "--tcp", "9000", "--udp", "9000"];
/// Where Debian's busybox-static puts the binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// busybox applets linked into the image's /bin.
const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "echo", "printf", "sleep", "test", "[", "true", "false", "head", "tail",
    "tr", "wc", "grep", "sed", "awk", "ls", "mkdir", "rm", "touch", "hostname", "env", "id",
    "kill", "ps", "date", "dd", "seq", "uname", "nc", "wget", "timeout", "yes", "nslookup",
];

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {message}")]
    Binary { path: PathBuf, message: String },
    #[error("building the image tarball: {0}")]
    Tar(std::io::Error),
    #[error("importing {PROBE_IMAGE_REF} into the engine: {0}")]
    Import(String),
}

/// True when `image` (as a pod names it) is the probe image.
pub fn is_probe_image(image: &str) -> bool {
    let name = image.rsplit('/').next().unwrap_or(image);
    name.split(':').next() == Some(PROBE_IMAGE)
}

/// Refuses a binary that needs a dynamic loader: the image has no libc.
pub fn check_static(path: &Path) -> Result<(), ImageError> {
    let error = |message: String| ImageError::Binary {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return Err(error("expected a 64-bit ELF executable".into()));
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    for i in 0..count {
        let at = phoff + i * size;
        let Some(header) = bytes.get(at..at + 4) else {
            return Err(error("truncated program headers".into()));
        };
        // PT_INTERP: the binary names a dynamic loader.
        if u32::from_le_bytes(header.try_into().expect("4 bytes")) == 3 {
            return Err(error(
                "dynamically linked (it names an ELF interpreter); the image needs a static binary: `cargo xtask build` builds skiff-probe that way, into target/static/".into(),
            ));
        }
    }
    Ok(())
}

/// The image's root filesystem as a tarball.
pub fn rootfs_tar(probe: &Path, busybox: &Path) -> Result<Vec<u8>, ImageError> {
    check_static(probe)?;
    check_static(busybox)?;
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        tar.append_data(&mut header, name, std::io::empty())
    };
    for (name, mode) in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)] {
        dir(&mut tar, name, mode).map_err(ImageError::Tar)?;
    }
    for (source, name) in [(probe, "bin/skiff-probe"), (busybox, "bin/busybox")] {
        tar.append_path_with_name(source, name)
            .map_err(ImageError::Tar)?;
    }
    for applet in APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")
            .map_err(ImageError::Tar)?;
    }
    let passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(passwd.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "etc/passwd", &passwd[..])
        .map_err(ImageError::Tar)?;
    tar.into_inner().map_err(ImageError::Tar)
}

/// Builds `skiff-probe:latest` in the engine from the static probe and busybox.
pub fn build_probe_image(
    runtime: &DockerRuntime,
    probe: &Path,
    busybox: &Path,
) -> Result<(), ImageError> {
    let tarball = rootfs_tar(probe, busybox)?;
    let cmd = serde_json::to_string(&PROBE_IMAGE_CMD).unwrap_or_default();
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(PROBE_IMAGE.into()),
        tag: Some("latest".into()),
        changes: vec![
            r#"ENTRYPOINT ["skiff-probe"]"#.into(),
            format!("CMD {cmd}"),
            "ENV PATH=/bin".into(),
        ],
        ..Default::default()
    };
    runtime.block_on(async {
        let mut progress = runtime.docker().create_image(
            Some(options),
            Some(bollard::body_full(tarball.into())),
            None,
        );
        while let Some(step) = progress.next().await {
            step.map_err(|e| ImageError::Import(e.to_string()))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_refused_with_the_reason() {
        // The test binary itself is dynamically linked.
        let exe = std::env::current_exe().unwrap();
        let e = check_static(&exe).unwrap_err().to_string();
        assert!(e.contains("dynamically linked"), "{e}");
        let text = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(text.path(), "#!/bin/sh\n").unwrap();
        assert!(check_static(text.path())
            .unwrap_err()
            .to_string()
            .contains("ELF"));
    }

    #[test]
    fn the_image_name_matches_with_or_without_its_tag() {
        assert!(is_probe_image("skiff-probe"));
        assert!(is_probe_image("skiff-probe:latest"));
        assert!(is_probe_image("localhost/skiff-probe:v1"));
        assert!(!is_probe_image("busybox"));
        assert!(!is_probe_image("skiff-probe-extra"));
    }
}
