//! Batched map writes: `BPF_MAP_UPDATE_BATCH` and `BPF_MAP_DELETE_BATCH` (kernel >= 5.6), one
//! syscall for many entries instead of one per entry. aya 0.14 has no API for them.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of the kernel's `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes every `(key, value)` pair (creating or replacing) in as few syscalls as the kernel
/// allows.
pub fn update<K: aya::Pod, V: aya::Pod>(map: BorrowedFd<'_>, entries: &[(K, V)]) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let keys: Vec<K> = entries.iter().map(|(k, _)| *k).collect();
    let values: Vec<V> = entries.iter().map(|(_, v)| *v).collect();
    let mut done = 0;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: (keys.len() - done) as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        match bpf(BPF_MAP_UPDATE_BATCH, &mut attr) {
            Ok(()) => return Ok(()),
            // Partial progress (`count` says how far) is retried from there; none is an error.
            Err(_) if attr.count > 0 => done += attr.count as usize,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes every key; keys already absent are skipped, not errors.
pub fn delete<K: aya::Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    let mut done = 0;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            count: (keys.len() - done) as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => return Ok(()),
            // The kernel stops at the first missing key, after `count` deletions.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => done += attr.count as usize + 1,
            Err(_) if attr.count > 0 => done += attr.count as usize,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn bpf(command: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, zero-padded batch attribute whose pointers reference live
    // slices of `count` elements of the map's key and value sizes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
