//! Where a node's data plane lives on bpffs, so it outlives the daemon process.
//!
//! ```text
//! <pin dir>/maps/<layout>/<MAP>   every map of the object, under its layout version
//! <pin dir>/links/<name>           every TCX and cgroup link
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
pub const MAP_LAYOUT_VERSION: &str = "skiff-maps-3";

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
        self.root.join("maps").join(MAP_LAYOUT_VERSION).join(name)
    }

    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join("links").join(name)
    }

    /// Creates the folders, or checks that maps already pinned there use this daemon's layout.
    /// (bpffs holds only folders and BPF objects, so the version is a folder name.)
    pub(super) fn prepare(&self) -> Result<(), DataPlaneError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| DataPlaneError::Pins { path, source }
        };
        check_on_bpffs(&self.root)?;
        let maps = self.root.join("maps");
        for dir in [maps.join(MAP_LAYOUT_VERSION), self.root.join("links")] {
            fs::create_dir_all(&dir).map_err(err(&dir))?;
        }
        for entry in fs::read_dir(&maps).map_err(err(&maps))? {
            let found = entry.map_err(err(&maps))?.file_name();
            if found != MAP_LAYOUT_VERSION {
                return Err(DataPlaneError::LayoutMismatch {
                    pin_dir: self.root.clone(),
                    found: found.to_string_lossy().into_owned(),
                    expected: MAP_LAYOUT_VERSION,
                });
            }
        }
        Ok(())
    }
}

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Pins only work on bpffs; say so plainly instead of failing on the first mkdir. The nearest
/// existing ancestor of `root` decides (the folders below it are created later).
fn check_on_bpffs(root: &Path) -> Result<(), DataPlaneError> {
    let existing = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).map_err(|e| {
        DataPlaneError::Pins {
            path: root.to_path_buf(),
            source: io::Error::other(e),
        }
    })?;
    // SAFETY: a valid NUL-terminated path and a zeroed statfs for the kernel to fill.
    let f_type = unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        if libc::statfs(path.as_ptr(), &mut stat) != 0 {
            return Err(DataPlaneError::Pins {
                path: existing.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        stat.f_type
    };
    if f_type as i64 != BPF_FS_MAGIC {
        return Err(DataPlaneError::NotBpffs {
            pin_dir: root.to_path_buf(),
            checked: existing.to_path_buf(),
        });
    }
    Ok(())
}
