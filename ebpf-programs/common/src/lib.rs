//! Types shared between Skiff's eBPF programs and user space.
//!
//! Every type stored in a BPF map lives here, so the kernel and the node daemon can never
//! disagree on a layout. Rules for map types:
//! - `#[repr(C)]` with explicit `_pad` fields, so no byte of a key is left uninitialised
//!   (a hash lookup compares every byte);
//! - only fixed-size integers and arrays: no `bool`, `Option` or enums (their invalid bit
//!   patterns are undefined behaviour when the other side writes them);
//! - a compile-time size and offset check beside each type;
//! - addresses and ports are stored in network byte order, as the kernel hands them over.
//!
//! The `user` feature adds `aya::Pod` impls for user space; the eBPF crate builds without it.
#![no_std]

mod conntrack;
mod drop_reason;
mod maps;
mod policy;
mod service;

pub use conntrack::*;
pub use drop_reason::DropReason;
pub use maps::*;
pub use policy::*;
pub use service::*;

/// Asserts a type's size and field offsets at compile time.
#[macro_export]
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr $(, $field:ident = $offset:expr)* $(,)?) => {
        const _: () = {
            assert!(core::mem::size_of::<$ty>() == $size);
            $(assert!(core::mem::offset_of!($ty, $field) == $offset);)*
        };
    };
}
