//! The malloc settings the daemon starts with (`tunnelkeeper::allocator`), checked in a
//! process of their own: a big block freed must not pull the next big blocks into the
//! heap, as glibc's dynamic mmap threshold does (the snapshots' megabyte vectors then left
//! holes that RSS kept: about 14 MiB at 10,000 targets).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
#[allow(unsafe_code)]
fn a_big_block_freed_leaves_the_next_ones_in_mappings_of_their_own() {
    use tunnelkeeper::allocator::{tune, Tuning};

    assert_eq!(
        tune(),
        Tuning::Applied,
        "run without MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ and GLIBC_TUNABLES"
    );
    // SAFETY: mallinfo2 only reads malloc's counters.
    let mapped_blocks = || unsafe { libc::mallinfo2() }.hblks;
    // Freed, a 4 MiB mapping would raise glibc's default threshold to 4 MiB.
    drop(std::hint::black_box(vec![1u8; 4 << 20]));
    let before = mapped_blocks();
    let block = std::hint::black_box(vec![1u8; 1 << 20]);
    let after = mapped_blocks();
    drop(block);
    assert_eq!(
        after,
        before + 1,
        "a 1 MiB block after a 4 MiB one was freed came from the heap, not a mapping"
    );
}
