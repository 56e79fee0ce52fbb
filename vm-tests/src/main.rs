//! `skiff-vm-test`: Skiff node daemons in QEMU VMs booting another kernel, joined to a
//! control plane in the lab, and the service + policy smoke scenario across them.
//!
//! `cargo xtask vm-test` installs QEMU and the Debian kernel, builds, and runs this. See
//! vm-tests/README.md.

mod cpio;
mod image;
mod smoke;
mod vm;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Skiff node daemons in QEMU VMs: the service + policy smoke scenario")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the VMs, join them to a control plane in a lab namespace, run the scenario.
    ///
    /// Needs root, qemu-system-x86_64, busybox (static) and a kernel unpacked from a Debian
    /// linux-image package, with a modules.dep; `cargo xtask vm-test` provides all of them.
    Run {
        /// Root of the unpacked kernel package (holds boot/vmlinuz-* and lib/modules/*).
        #[arg(long, value_name = "DIR")]
        kernel_root: PathBuf,
        /// Number of VMs (node daemons), at least 2.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=4))]
        vms: u8,
        /// Guest memory per VM.
        #[arg(long, default_value_t = 768, value_name = "MIB")]
        memory_mib: u32,
        /// Logs, consoles, the initramfs and the control plane's data (emptied first).
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Where to write the result as JSON (kernel, checks with their times).
        #[arg(long, value_name = "FILE")]
        result: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            kernel_root,
            vms,
            memory_mib,
            state_dir,
            result,
        } => {
            let settings = smoke::Settings {
                kernel_root,
                vms: vms.into(),
                memory_mib,
                state_dir,
                result,
            };
            match smoke::run(&settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vm-test: FAILED: {e:#}");
                    eprintln!(
                        "vm-test: consoles and logs are in {}",
                        settings.state_dir.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
    }
}
