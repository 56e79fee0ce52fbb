//! Empty on purpose: node-daemon's build.rs depends on this package to build the `skiff`
//! binary target (the eBPF object) with aya-build, and a build dependency needs a library.
#![no_std]
