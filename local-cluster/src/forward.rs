//! TCP forwarding from the host's loopback into a lab namespace: how `cargo xtask up` makes
//! the cluster's API and the demo's NodePort reachable from the host shell without giving the
//! lab a route out. Each accepted connection gets a thread that enters the lab namespace and
//! connects from there, so the lab sees an ordinary client on its bridge.

use std::{
    fs::File,
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    sync::Arc,
    thread,
    time::Duration,
};

use nix::sched::{setns, CloneFlags};

use crate::ClusterError;

/// One forwarded port: `listen` on the host to `target` as seen from the namespace `netns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

impl std::str::FromStr for Route {
    type Err = String;

    /// `LISTEN=TARGET`, e.g. `127.0.0.1:6443=10.200.0.1:6443`.
    fn from_str(text: &str) -> Result<Route, String> {
        let expected =
            || format!("{text:?}: expected LISTEN=TARGET, e.g. 127.0.0.1:6443=10.200.0.1:6443");
        let (listen, target) = text.split_once('=').ok_or_else(expected)?;
        Ok(Route {
            listen: listen.parse().map_err(|_| expected())?,
            target: target.parse().map_err(|_| expected())?,
        })
    }
}

/// Every route bound, ready to [`Listeners::serve`].
pub struct Listeners {
    namespace: Arc<File>,
    listeners: Vec<(TcpListener, SocketAddr)>,
}

/// Binds every route, so a taken port fails at once, before anything is forwarded.
pub fn bind(netns: &Path, routes: &[Route]) -> Result<Listeners, ClusterError> {
    // Opened once: entering by file descriptor works even after the name is gone.
    let namespace = Arc::new(File::open(netns).map_err(ClusterError::io(netns))?);
    let mut listeners = Vec::new();
    for route in routes {
        let listener = TcpListener::bind(route.listen).map_err(|source| ClusterError::Io {
            what: format!(
                "listening on {} (is another cluster or program using it?)",
                route.listen
            ),
            source,
        })?;
        listeners.push((listener, route.target));
    }
    Ok(Listeners {
        namespace,
        listeners,
    })
}

impl Listeners {
    /// Forwards every connection until the process ends.
    pub fn serve(self) {
        let workers: Vec<_> = self
            .listeners
            .into_iter()
            .map(|(listener, target)| {
                let namespace = Arc::clone(&self.namespace);
                thread::spawn(move || accept_loop(listener, target, namespace))
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, namespace: Arc<File>) {
    for client in listener.incoming().flatten() {
        let namespace = Arc::clone(&namespace);
        thread::spawn(move || {
            if let Err(e) = relay(client, target, &namespace) {
                eprintln!("skiff-forward: {target}: {e}");
            }
        });
    }
}

fn relay(client: TcpStream, target: SocketAddr, namespace: &File) -> io::Result<()> {
    // Only this thread changes namespace; the socket stays in the lab once made.
    setns(namespace.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let upstream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (mut client_read, mut upstream_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// The namespace path argument, checked.
pub fn netns_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{text:?}: no such network namespace file"))
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn routes_parse_and_bad_ones_say_what_was_expected() {
        let route: Route = "127.0.0.1:6443=10.200.0.1:6443".parse().unwrap();
        assert_eq!(route.listen.port(), 6443);
        assert_eq!(route.target.to_string(), "10.200.0.1:6443");
        let e = "127.0.0.1:6443".parse::<Route>().unwrap_err();
        assert!(e.contains("LISTEN=TARGET"), "{e}");
        assert!("x=10.200.0.1:1".parse::<Route>().is_err());
    }
}
