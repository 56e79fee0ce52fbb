//! The newc cpio format the kernel unpacks as its initramfs: a header of thirteen 8-digit hex
//! fields per entry, the name, the data, each padded to 4 bytes.

use std::io::{self, Write};

const MODE_DIR: u32 = 0o040_000;
const MODE_FILE: u32 = 0o100_000;

pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            written: 0,
            next_inode: 1,
        }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, MODE_DIR | 0o755, &[])
    }

    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, MODE_FILE | (permissions & 0o7777), data)
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, &[])?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let inode = self.next_inode;
        self.next_inode += 1;
        let nlink = if mode & MODE_DIR != 0 { 2 } else { 1 };
        let fields = [
            inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.written % 4) % 4;
        self.write(&[0; 3][..padding as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_cpio_reads_them_back() {
        let mut w = Writer::new(Vec::new());
        w.dir("etc").unwrap();
        w.file("/etc/hello", 0o644, b"hello\n").unwrap();
        w.file("bin/x", 0o755, b"12345").unwrap();
        let archive = w.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);
        assert!(archive.starts_with(b"070701"));
        // busybox cpio (installed by setup) is an independent reader of the format.
        let Ok(mut child) = std::process::Command::new("busybox")
            .args(["cpio", "-t"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            assert!(std::env::var("CI").is_err(), "busybox is missing under CI");
            return;
        };
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let listed = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout),
            "etc\netc/hello\nbin/x\n"
        );
    }
}
