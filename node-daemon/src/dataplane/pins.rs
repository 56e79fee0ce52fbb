//! Where a node's data plane lives on bpffs, so it outlives the daemon process.
//!
//! ```text
//! <pin dir>/LAYOUT          map layout version the pinned maps were created with
//! <pin dir>/maps/<MAP>      every map of the object
//! <pin dir>/links/<name>    every TCX and cgroup link
//! ```
//! A restarted daemon (kill -9 included) reopens the maps and replaces the programs behind the
//! links, so traffic never stops and no map is flushed.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::DataPlaneError;

/// Bumped whenever a pinned map's key, value or meaning changes: pinned maps of another
/// layout cannot be reused, and the daemon says so instead of misreading them.
pub const MAP_LAYOUT_VERSION: &str = "skiff-maps-2";

#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(root: &Path) -> PinLayout {
        PinLayout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join("links").join(name)
    }

    /// Creates the folders, or checks that pins already there use this daemon's layout.
    pub(super) fn prepare(&self) -> Result<(), DataPlaneError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| DataPlaneError::Pins { path, source }
        };
        for dir in [self.root.join("maps"), self.root.join("links")] {
            fs::create_dir_all(&dir).map_err(err(&dir))?;
        }
        let layout = self.root.join("LAYOUT");
        match fs::read_to_string(&layout) {
            Ok(found) if found.trim() == MAP_LAYOUT_VERSION => Ok(()),
            Ok(found) => Err(DataPlaneError::LayoutMismatch {
                pin_dir: self.root.clone(),
                found: found.trim().to_string(),
                expected: MAP_LAYOUT_VERSION,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::write(&layout, format!("{MAP_LAYOUT_VERSION}\n")).map_err(err(&layout))
            }
            Err(e) => Err(err(&layout)(e)),
        }
    }
}
