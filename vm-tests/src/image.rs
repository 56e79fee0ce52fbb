//! What a VM boots: a Debian kernel unpacked from its package, and an initramfs holding
//! busybox, `skiff-node` with the libraries it links, the static `skiff-probe`, the node's
//! join config, the kernel modules the data plane needs, and an init script that starts the
//! daemon.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::cpio;

/// Modules the node needs that Debian builds as modules: the NIC (virtio), pod veths, and
/// the clsact qdisc with the BPF classifier (TC programs on kernels without TCX).
const MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/net/veth.ko",
    "kernel/net/sched/sch_ingress.ko",
    "kernel/net/sched/cls_bpf.ko",
];

/// A kernel unpacked from a `linux-image-*` package (`dpkg-deb -x`).
#[derive(Clone, Debug)]
pub struct Kernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/RELEASE`, with a `modules.dep` (`busybox depmod -b`).
    pub modules: PathBuf,
}

impl Kernel {
    /// Finds the one kernel in an unpacked package root.
    pub fn find(root: &Path) -> anyhow::Result<Kernel> {
        let boot = root.join("boot");
        let mut found = Vec::new();
        for entry in fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(release) = name.strip_prefix("vmlinuz-") {
                found.push(release.to_string());
            }
        }
        let [release] = found.as_slice() else {
            bail!(
                "expected one vmlinuz-* in {}, found {found:?} (cargo xtask vm-test unpacks one)",
                boot.display()
            );
        };
        let modules = root.join("lib/modules").join(release);
        if !modules.join("modules.dep").is_file() {
            bail!(
                "{} has no modules.dep: run `busybox depmod -b {} {release}`",
                modules.display(),
                root.display()
            );
        }
        Ok(Kernel {
            release: release.clone(),
            vmlinuz: boot.join(format!("vmlinuz-{release}")),
            modules,
        })
    }

    /// [`MODULES`] and everything they depend on, each after its dependencies (the insmod
    /// order).
    pub fn module_load_order(&self) -> anyhow::Result<Vec<String>> {
        let path = self.modules.join("modules.dep");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut order = Vec::new();
        for module in MODULES {
            visit(&text, module, &mut order, 0)
                .with_context(|| format!("ordering the modules of {}", path.display()))?;
        }
        Ok(order)
    }
}

fn visit(
    dep_file: &str,
    module: &str,
    order: &mut Vec<String>,
    depth: usize,
) -> anyhow::Result<()> {
    if order.iter().any(|m| m == module) {
        return Ok(());
    }
    if depth > 32 {
        bail!("{module}: dependency cycle");
    }
    let deps = dep_file
        .lines()
        .find_map(|l| l.strip_prefix(module).and_then(|r| r.strip_prefix(':')))
        .with_context(|| format!("{module} is not listed"))?;
    for dep in deps.split_whitespace() {
        visit(dep_file, dep, order, depth + 1)?;
    }
    order.push(module.to_string());
    Ok(())
}

/// What goes into the image besides the kernel's modules.
pub struct Contents<'a> {
    pub node: &'a Path,
    pub static_probe: &'a Path,
    pub busybox: &'a Path,
    /// The node join config (`--control-plane`).
    pub node_conf: &'a str,
}

/// Writes the initramfs to `out` and returns its size in bytes.
pub fn build_initramfs(kernel: &Kernel, contents: &Contents, out: &Path) -> anyhow::Result<u64> {
    let mut archive = Archive::default();
    for dir in [
        "bin",
        "dev",
        "etc",
        "etc/skiff",
        "proc",
        "run",
        "sys",
        "tmp",
        "var",
        "var/lib",
    ] {
        archive.dir(dir);
    }
    archive.file("init", 0o755, INIT.as_bytes().to_vec());
    archive.file("bin/busybox", 0o755, read(contents.busybox)?);
    archive.file("bin/skiff-node", 0o755, stripped(contents.node)?);
    for library in linked_libraries(contents.node)? {
        let data = read(&library)?;
        archive.file(&library.to_string_lossy(), 0o755, data);
    }
    archive.file("bin/skiff-probe", 0o755, read(contents.static_probe)?);
    archive.file(
        "etc/skiff/node.conf",
        0o600,
        contents.node_conf.as_bytes().to_vec(),
    );
    let order = kernel.module_load_order()?;
    let module_dir = format!("lib/modules/{}", kernel.release);
    for module in &order {
        let data = read(&kernel.modules.join(module))?;
        archive.file(&format!("{module_dir}/{module}"), 0o644, data);
    }
    let list: String = order
        .iter()
        .map(|m| format!("/{module_dir}/{m}\n"))
        .collect();
    archive.file("etc/skiff/modules", 0o644, list.into_bytes());
    // Some tools look for these.
    archive.file("etc/hostname", 0o644, b"skiff-vm\n".to_vec());
    archive.file("etc/hosts", 0o644, b"127.0.0.1 localhost\n".to_vec());
    archive.file("etc/resolv.conf", 0o644, Vec::new());

    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = cpio::Writer::new(std::io::BufWriter::new(file));
    for entry in &archive.entries {
        match entry {
            Entry::Dir(path) => writer.dir(path)?,
            Entry::File(path, mode, data) => writer.file(path, *mode, data)?,
        }
    }
    let mut file = writer.finish()?;
    std::io::Write::flush(&mut file)?;
    Ok(fs::metadata(out)?.len())
}

enum Entry {
    Dir(String),
    File(String, u32, Vec<u8>),
}

/// Entries in order, with every parent directory before what it holds.
#[derive(Default)]
struct Archive {
    entries: Vec<Entry>,
    dirs: BTreeSet<String>,
}

impl Archive {
    fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_string());
        self.entries.push(Entry::Dir(path.to_string()));
    }

    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries.push(Entry::File(path.to_string(), mode, data));
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The binary without its debug info (a debug `skiff-node` is over 200 MB; stripped, under
/// 40), so the image stays small enough to load quickly and to hold in guest memory.
fn stripped(binary: &Path) -> anyhow::Result<Vec<u8>> {
    let out = std::env::temp_dir().join(format!("skiff-vm-strip-{}", std::process::id()));
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(binary)
        .status()
        .context("running strip (binutils)")?;
    if !status.success() {
        bail!("strip {} failed: {status}", binary.display());
    }
    let data = read(&out);
    let _ = fs::remove_file(&out);
    data
}

/// The shared libraries `binary` loads, the dynamic loader included, as `ldd` resolves them.
fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    if !output.status.success() {
        bail!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// PID 1 of every VM: mounts what the daemon needs, loads the modules, configures `eth0`
/// from the kernel command line (`skiff.node=`, `skiff.ip=`), then runs `skiff-node` with
/// its output on the console and powers off when it exits, so a dead daemon ends the VM.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
for module in $(cat /etc/skiff/modules); do
    insmod "$module" || echo "skiff-vm: insmod $module failed"
done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
NODE=$(arg skiff.node)
ADDRESS=$(arg skiff.ip)
hostname "$NODE"
ip link set lo up
ip addr add "$ADDRESS" dev eth0
ip link set eth0 up
mkdir -p /var/lib/skiff /run/skiff/netns /sys/fs/bpf/skiff
# What systemd does on a real node: give the root's children the controllers. The daemon
# hands them on down to its pods.
echo "+cpu +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control ||
    echo "skiff-vm: enabling controllers at the cgroup root failed"
echo "skiff-vm: $NODE up, kernel $(uname -r), eth0 $ADDRESS"
RUST_LOG=info skiff-node run --runtime embedded \
    --state-dir /var/lib/skiff --pod-netns-dir /run/skiff/netns \
    --probe-binary /bin/skiff-probe \
    --pin-dir /sys/fs/bpf/skiff --uplink eth0 --control-plane /etc/skiff/node.conf \
    --node-name "$NODE" --heartbeat-seconds 1 --api "${ADDRESS%/*}:10250" \
    --dns-upstream none > /dev/console 2>&1 &
# wait (busybox ash) also reaps the orphans the container shims leave to PID 1.
wait $!
echo "skiff-vm: skiff-node exited with status $?"
poweroff -f
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_every_library_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("lib/modules/6.1.0-test");
        fs::create_dir_all(dir.path().join("boot")).unwrap();
        fs::create_dir_all(&modules).unwrap();
        fs::write(dir.path().join("boot/vmlinuz-6.1.0-test"), b"").unwrap();
        fs::write(
            modules.join("modules.dep"),
            "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\n\
             kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/net/net_failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n\
             kernel/drivers/net/veth.ko:\n\
             kernel/net/sched/sch_ingress.ko:\n\
             kernel/net/sched/cls_bpf.ko:\n",
        )
        .unwrap();
        let kernel = Kernel::find(dir.path()).unwrap();
        assert_eq!(kernel.release, "6.1.0-test");
        let order = kernel.module_load_order().unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_pci.ko",
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/drivers/net/veth.ko",
                "kernel/net/sched/sch_ingress.ko",
                "kernel/net/sched/cls_bpf.ko",
            ]
        );
    }
}
