//! TEMPORARY on branch `group`: registers only the group and vodozemac peer benches.
//! The real `protocol.rs` (1:1 benches) lives on `main`; on merge, add
//! `mod group_benches;` and `group_benches::register(c)` to it.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

mod group_benches;
mod vodozemac_peer;

fn all(c: &mut Criterion) {
    group_benches::register(c);
    vodozemac_peer::register(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
