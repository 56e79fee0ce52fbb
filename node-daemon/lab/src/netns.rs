use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use nix::sched::{setns, CloneFlags};

use crate::{sys, Result};

/// A named network namespace (`/run/netns/NAME`) that the lab made and deletes on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    pub(crate) fn create(name: &str) -> Result<Netns> {
        sys::ip(&["netns", "add", name])?;
        Ok(Netns {
            name: name.to_string(),
            path: Path::new("/run/netns").join(name),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result (a panic
    /// in `f` is passed on). Only that thread changes namespace; the caller stays where it is.
    pub fn run<T, F>(&self, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let file = File::open(&self.path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.path.display()));
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
                f()
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Interfaces inside go with the namespace; a veth pair goes with either end.
        if let Err(e) = sys::ip(&["netns", "del", &self.name]) {
            eprintln!("lab cleanup: {e}");
        }
    }
}
