//! Container logs as a reader, for `skiff logs [-f]`: the embedded runtime's rotating files
//! (the rotated `log.1` first, then `log`, following appends and rotations), and a channel
//! of chunks for runtimes that stream logs from elsewhere (Docker).

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

/// How often a following reader looks for new output.
const POLL: Duration = Duration::from_millis(100);

/// Reads a rotating log; with `alive`, keeps following until it says the writer ended.
pub struct FileLog {
    path: PathBuf,
    /// `log.1` while it is being read, then the current file.
    file: Option<File>,
    rotated_done: bool,
    alive: Option<Box<dyn Fn() -> bool + Send>>,
}

impl FileLog {
    pub fn new(path: &Path, alive: Option<Box<dyn Fn() -> bool + Send>>) -> FileLog {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        FileLog {
            path: path.to_path_buf(),
            file: File::open(PathBuf::from(rotated)).ok(),
            rotated_done: false,
            alive,
        }
    }
}

impl Read for FileLog {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(file) = &mut self.file {
                let n = file.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
            }
            if !self.rotated_done {
                self.rotated_done = true;
                self.file = File::open(&self.path).ok();
                continue;
            }
            let Some(alive) = &self.alive else {
                return Ok(0);
            };
            // Rotated since we opened it: the open file (now `log.1`) is read to its end,
            // so go on with the new one.
            let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
            let open = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            if current.is_some() && current != open {
                self.file = File::open(&self.path).ok();
                continue;
            }
            if !alive() {
                // What the writer wrote before it ended is in the file by now.
                return match &mut self.file {
                    Some(file) => file.read(buf),
                    None => Ok(0),
                };
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A reader over chunks sent by another thread; ends when the sender is dropped.
pub struct ChannelLog {
    chunks: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    offset: usize,
}

impl ChannelLog {
    pub fn new(chunks: mpsc::Receiver<Vec<u8>>) -> ChannelLog {
        ChannelLog {
            chunks,
            pending: Vec::new(),
            offset: 0,
        }
    }
}

impl Read for ChannelLog {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.pending.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.pending = chunk;
                    self.offset = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        },
    };

    use super::*;

    #[test]
    fn reads_the_previous_file_then_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log.1"), "old\n").unwrap();
        std::fs::write(dir.path().join("log"), "new\n").unwrap();
        let mut text = String::new();
        FileLog::new(&dir.path().join("log"), None)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "old\nnew\n");
    }

    #[test]
    fn follows_appends_and_rotations_until_the_writer_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "one\n").unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let reader = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut text = String::new();
                FileLog::new(&path, Some(Box::new(move || flag.load(Ordering::SeqCst))))
                    .read_to_string(&mut text)
                    .unwrap();
                text
            }
        });
        std::thread::sleep(Duration::from_millis(250));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(250));
        std::fs::rename(&path, dir.path().join("log.1")).unwrap();
        std::fs::write(&path, "three\n").unwrap();
        std::thread::sleep(Duration::from_millis(250));
        alive.store(false, Ordering::SeqCst);
        assert_eq!(reader.join().unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_channel_log_ends_with_its_sender() {
        let (tx, rx) = mpsc::channel();
        tx.send(b"ab".to_vec()).unwrap();
        tx.send(b"c".to_vec()).unwrap();
        drop(tx);
        let mut text = String::new();
        ChannelLog::new(rx).read_to_string(&mut text).unwrap();
        assert_eq!(text, "abc");
    }
}
