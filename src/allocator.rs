//! glibc malloc's settings for the daemon, set once at start before any thread runs.
//!
//! Measured at 10,000 targets (bench/history_cost.py's config, 130 s after start; see
//! BENCHMARKS.md "Where the memory per target goes"): glibc's defaults cost about 14 MiB
//! of RSS over the same heap. The snapshot the monitor publishes several times a second
//! holds vectors of megabytes; the first one freed raises glibc's *dynamic* mmap threshold
//! to its size, and from then on every such vector comes from an arena instead of its own
//! mapping, and leaves holes there that RSS keeps. A fixed threshold keeps big blocks in
//! mappings that go back to the kernel when freed. Fewer arenas (glibc makes up to eight
//! per core, one per thread that meets contention) keep free memory in fewer places.
//!
//! An operator's own choice wins: with `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or a
//! `glibc.malloc` tunable in `GLIBC_TUNABLES` set, nothing is changed.

/// Arenas glibc may make: the runtime's workers and the daemon's few threads share them.
pub const ARENA_MAX: i32 = 2;

/// Allocations from this size up get their own mapping, returned to the kernel when freed
/// (glibc's default starting value, kept from moving).
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// The environment variables through which an operator tunes glibc malloc.
const OPERATOR_SETTINGS: [&str; 2] = ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"];

/// What [`tune`] did, for the start-up log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// [`ARENA_MAX`] and [`MMAP_THRESHOLD_BYTES`] are in force.
    Applied,
    /// The environment sets malloc's behaviour (the variable named): left as it says.
    LeftToEnvironment(&'static str),
    /// Not glibc, or glibc refused a setting.
    NotApplied,
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tuning::Applied => write!(
                f,
                "arena_max {ARENA_MAX}, mmap_threshold {MMAP_THRESHOLD_BYTES} bytes (fixed)"
            ),
            Tuning::LeftToEnvironment(name) => write!(f, "as {name} sets them"),
            Tuning::NotApplied => write!(f, "the allocator's defaults"),
        }
    }
}

/// Sets glibc malloc's arena count and mmap threshold, unless the environment does.
/// Call it before the runtime starts its threads.
pub fn tune() -> Tuning {
    if let Some(name) = operator_setting(|name| std::env::var(name).ok()) {
        return Tuning::LeftToEnvironment(name);
    }
    apply()
}

/// The first variable through which the environment tunes malloc, if any.
fn operator_setting(var: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    if let Some(name) = OPERATOR_SETTINGS.into_iter().find(|n| var(n).is_some()) {
        return Some(name);
    }
    var("GLIBC_TUNABLES")
        .is_some_and(|t| t.contains("glibc.malloc."))
        .then_some("GLIBC_TUNABLES")
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn apply() -> Tuning {
    // SAFETY: mallopt only stores the values in malloc's parameters; it takes no pointer.
    let arenas = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) };
    // SAFETY: as above. An explicit threshold also turns off glibc's dynamic adjustment.
    let threshold = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
    // mallopt returns 1 on success, 0 on error.
    if arenas == 1 && threshold == 1 {
        Tuning::Applied
    } else {
        Tuning::NotApplied
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::NotApplied
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment: (name, value) pairs.
    type Vars = &'static [(&'static str, &'static str)];

    #[test]
    fn an_operators_malloc_settings_win() {
        let env = |pairs: Vars| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let cases: [(Vars, Option<&str>); 5] = [
            (&[], None),
            (&[("RUST_LOG", "info")], None),
            (&[("MALLOC_ARENA_MAX", "4")], Some("MALLOC_ARENA_MAX")),
            (
                &[("MALLOC_MMAP_THRESHOLD_", "65536")],
                Some("MALLOC_MMAP_THRESHOLD_"),
            ),
            (
                &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")],
                Some("GLIBC_TUNABLES"),
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(operator_setting(env(vars)), want, "{vars:?}");
        }
        let other_tunable = env(&[("GLIBC_TUNABLES", "glibc.rtld.nns=4")]);
        assert_eq!(operator_setting(other_tunable), None);
    }
}
