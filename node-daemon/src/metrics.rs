//! `/metrics` in the Prometheus text format: how full each data-plane map is and what the
//! data plane dropped, by reason. Read from the pinned maps, so the numbers describe the
//! kernel's state whichever daemon process pinned it.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    thread,
};

use crate::dataplane::{map_fullness, pinned_drop_counts, DataPlaneError};

/// Renders every metric. Counting a map's entries walks its keys, so a scrape of full
/// 262k-entry maps costs a few hundred milliseconds; scrape every 15 s or more.
pub fn render(pin_dir: &Path) -> Result<String, DataPlaneError> {
    let mut out = String::new();
    let fullness = map_fullness(pin_dir)?;
    out.push_str("# HELP skiff_map_entries Entries in a data-plane map.\n");
    out.push_str("# TYPE skiff_map_entries gauge\n");
    for m in &fullness {
        out.push_str(&format!(
            "skiff_map_entries{{map=\"{}\"}} {}\n",
            m.map, m.entries
        ));
    }
    out.push_str("# HELP skiff_map_capacity Maximum entries of a data-plane map.\n");
    out.push_str("# TYPE skiff_map_capacity gauge\n");
    for m in &fullness {
        out.push_str(&format!(
            "skiff_map_capacity{{map=\"{}\"}} {}\n",
            m.map, m.capacity
        ));
    }
    out.push_str("# HELP skiff_drops_total Packets the data plane dropped, by reason.\n");
    out.push_str("# TYPE skiff_drops_total counter\n");
    for (reason, count) in pinned_drop_counts(pin_dir)? {
        out.push_str(&format!(
            "skiff_drops_total{{reason=\"{}\"}} {count}\n",
            reason.label()
        ));
    }
    Ok(out)
}

/// Serves `render` on `addr` (any path) from a background thread.
pub fn serve(addr: SocketAddr, pin_dir: PathBuf) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let (status, body) = match render(&pin_dir) {
                    Ok(body) => ("200 OK", body),
                    Err(e) => ("500 Internal Server Error", format!("{e}\n")),
                };
                let _ = crate::http::respond(stream, status, "text/plain; version=0.0.4", &body);
            }
        })?;
    Ok(())
}
