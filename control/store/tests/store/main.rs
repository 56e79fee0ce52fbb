//! The store's integration tests, in one binary so that etcd-bound and sleeping tests overlap:
//! `conformance` runs the same behaviour against both backends, `embedded`, `etcd` and
//! `campaign` (elections) cover what only one of them has.

mod campaign;
mod common;
mod conformance;
mod embedded;
mod etcd;
