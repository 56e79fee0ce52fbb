//! The statically linked probe that `cargo xtask build` and `cargo xtask test` produce: it
//! must have no ELF interpreter (so it runs in any pod's mount namespace) and must run.

use std::{
    io::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

/// `SKIFF_PROBE_STATIC` (xtask sets it), else the xtask layout beside this test's target dir.
fn static_probe() -> PathBuf {
    if let Some(path) = std::env::var_os("SKIFF_PROBE_STATIC") {
        return PathBuf::from(path);
    }
    // CARGO_BIN_EXE is target/<profile>/skiff-probe.
    Path::new(env!("CARGO_BIN_EXE_skiff-probe"))
        .ancestors()
        .nth(2)
        .expect("target dir")
        .join("static/x86_64-unknown-linux-gnu/release/skiff-probe")
}

/// The types of the program headers of a 64-bit little-endian ELF file.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF file");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect()
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;

#[test]
fn the_static_probe_has_no_interpreter_and_runs() {
    let path = static_probe();
    if !path.is_file() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI=true but {path:?} is missing: cargo xtask test builds it"
        );
        eprintln!("skipped: {path:?} not built (cargo xtask build makes it)");
        return;
    }
    let types = program_header_types(&std::fs::read(&path).unwrap());
    assert!(types.contains(&PT_LOAD), "{path:?}: no loadable segment");
    assert!(
        !types.contains(&PT_INTERP),
        "{path:?} is dynamically linked (it has a PT_INTERP)"
    );

    let help = Command::new(&path).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("connect"));

    // Sockets work without any shared library: one exchange with a stand-in server.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, client) = listener.accept().unwrap();
        stream
            .write_all(format!("stand-in {client}\n").as_bytes())
            .unwrap();
    });
    let output = Command::new(&path)
        .args(["connect", &target])
        .output()
        .unwrap();
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(r#""pod":"stand-in""#), "{stdout}");
}
