//! `skiff-forward`: forwards ports of the host's loopback into a lab namespace (started by
//! `cargo xtask up`, stopped by `cargo xtask down`). See `skiff_local_cluster::forward`.

use clap::Parser;
use skiff_local_cluster::forward;

#[derive(Parser)]
#[command(
    about = "Forward TCP ports of the host into a lab network namespace",
    after_help = "Example:\n  skiff-forward --netns /run/netns/skiff-lab-up-x-host \\\n    \
                  127.0.0.1:6443=10.200.0.1:6443 127.0.0.1:30080=10.200.0.2:30080"
)]
struct Cli {
    /// The namespace to connect from (a file such as /run/netns/NAME).
    #[arg(long, value_parser = forward::netns_path)]
    netns: std::path::PathBuf,
    /// LISTEN=TARGET pairs: host address to listen on, address to reach inside the namespace.
    #[arg(required = true)]
    routes: Vec<forward::Route>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listeners = forward::bind(&cli.netns, &cli.routes)?;
    // Readiness signal for whoever started us.
    println!("forwarding");
    listeners.serve();
    Ok(())
}
