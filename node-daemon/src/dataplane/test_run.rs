//! Running the TC programs on a packet through BPF_PROG_TEST_RUN, without attaching them:
//! the basis of the packet fixtures and of per-packet cost measurements.

use std::time::Duration;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use skiff_common::programs;

use super::{program_mut, DataPlane, DataPlaneError};

/// Which TC program to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcProgram {
    FromPod,
    ToPod,
    FromNetwork,
}

impl TcProgram {
    fn name(self) -> &'static str {
        match self {
            TcProgram::FromPod => programs::FROM_POD,
            TcProgram::ToPod => programs::TO_POD,
            TcProgram::FromNetwork => programs::FROM_NETWORK,
        }
    }
}

/// What a program did with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The TC verdict (`TC_ACT_OK` = 0, `TC_ACT_SHOT` = 2, ...).
    pub verdict: i32,
    /// The packet as the program left it.
    pub packet_out: Vec<u8>,
    /// Mean time per run as the kernel measured it.
    pub duration: Duration,
}

/// Room for programs that grow a packet (encapsulation, ICMP replies).
const OUT_HEADROOM: usize = 256;

impl DataPlane {
    /// Runs `program` on `packet` `repeat` times. The skb's ifindex is `ifindex`, which must be
    /// an interface in the calling thread's network namespace (1 = loopback always works).
    pub fn test_run(
        &mut self,
        program: TcProgram,
        packet: &[u8],
        ifindex: u32,
        repeat: u32,
    ) -> Result<TestRunOutcome, DataPlaneError> {
        let name = program.name();
        let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, name)?;
        let mut out = vec![0u8; packet.len() + OUT_HEADROOM];
        let ctx = SkBuffCtx::with_ifindex(ifindex);
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut out),
                ctx_in: Some(ctx.as_bytes()),
                repeat: repeat.max(1),
                ..TestRunOptions::new()
            })
            .map_err(|e| DataPlaneError::program(name, e))?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutcome {
            verdict: result.return_value as i32,
            packet_out: out,
            duration: result.duration,
        })
    }
}

/// The kernel's `struct __sk_buff` as BPF_PROG_TEST_RUN accepts it in `ctx_in`: only a few
/// fields may be non-zero, `ifindex` among them.
#[repr(C)]
struct SkBuffCtx {
    words: [u32; SK_BUFF_WORDS],
}

/// `sizeof(struct __sk_buff)` is 192 bytes on current kernels.
const SK_BUFF_WORDS: usize = 192 / 4;
/// Offset of `ifindex` in `struct __sk_buff`, in 32-bit words.
const SK_BUFF_IFINDEX_WORD: usize = 10;

impl SkBuffCtx {
    fn with_ifindex(ifindex: u32) -> Self {
        let mut words = [0u32; SK_BUFF_WORDS];
        words[SK_BUFF_IFINDEX_WORD] = ifindex;
        SkBuffCtx { words }
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: a plain array of u32 viewed as bytes.
        unsafe {
            std::slice::from_raw_parts(
                self.words.as_ptr().cast::<u8>(),
                std::mem::size_of_val(&self.words),
            )
        }
    }
}
