//! Builds the eBPF object (`ebpf-programs/programs`, bin `skiff`) with aya-build and leaves it in
//! OUT_DIR, where `src/dataplane` embeds it. The eBPF build uses Debian's rustc 1.96 (linked into
//! rustup as the `debian-web` toolchain by `cargo xtask setup`), which ships a prebuilt `core`
//! for `bpfel-unknown-none`, and the bpf-linker that setup installs under `.tools/bin`.

use std::{env, path::PathBuf, process::Command};

use anyhow::{bail, Context as _};
use aya_build::{Package, Toolchain};

/// The rustup toolchain name `cargo xtask setup` links Debian's compiler under.
const EBPF_TOOLCHAIN: &str = "debian-web";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .context("node-daemon has no parent folder")?
        .to_path_buf();
    let tools_bin = workspace.join(".tools/bin");
    println!("cargo:rerun-if-changed={}", tools_bin.display());

    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if !skip {
        check_toolchain(&tools_bin)?;
    }

    // Children (aya-build's cargo, rustc, the linker) inherit these.
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools_bin];
    paths.extend(env::split_paths(&path));
    env::set_var("PATH", env::join_paths(paths)?);
    // aya-ebpf needs one unstable feature; unlock it for that crate alone on a stable compiler.
    env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf");
    // aya-build relays the inner cargo's stderr as build warnings; without progress lines only
    // real compiler messages from the eBPF crate remain.
    env::set_var("CARGO_TERM_QUIET", "true");

    let ebpf_dir = workspace.join("ebpf-programs/programs");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [Package {
            name: "skiff-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
    .context("building the eBPF object failed; `cargo xtask setup` installs what it needs")?;
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("ebpf-programs/common").display()
    );
    Ok(())
}

fn check_toolchain(tools_bin: &std::path::Path) -> anyhow::Result<()> {
    if !tools_bin.join("bpf-linker").exists() {
        bail!(
            "bpf-linker is missing from {}: run `cargo xtask setup` first (it installs the eBPF \
             toolchain), or set AYA_BUILD_SKIP=1 to build without the eBPF object",
            tools_bin.display()
        );
    }
    let rustup_has_toolchain = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "rustc", "--version"])
        .output()
        .map(|out| out.status.success());
    if let Ok(false) = rustup_has_toolchain {
        bail!(
            "rustup has no `{EBPF_TOOLCHAIN}` toolchain: run `cargo xtask setup` first (it links \
             Debian's rustc 1.96, which has a prebuilt core for the BPF target)"
        );
    }
    Ok(())
}
