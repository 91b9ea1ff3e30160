//! Every subcommand's `--help` says its exit codes and offers only its own options: a
//! script that branches on `tunnelkeeper status`'s exit must find the codes there, and
//! `print-config --help` must not offer `--log-format`, which it never uses.

mod common;

use common::run_cli;

/// Each subcommand, the exit codes its help must list, and options of others it must not
/// offer.
const SUBCOMMANDS: [(&str, &[&str]); 7] = [
    ("run", &["0 stopped", "2 the config does not validate"]),
    ("check-config", &["0 valid, 2 invalid"]),
    ("print-config", &["0 always"]),
    ("status", &["0 VPN OK, 1 DEGRADED, 2", "3 unknown"]),
    ("test-page", &["0 every sink accepted", "3 the daemon is"]),
    (
        "healthcheck",
        &["0 the daemon answers /-/healthy, 1 otherwise"],
    ),
    ("reload", &["0 the new config runs, 1"]),
];

/// Options only `run` takes.
const RUN_ONLY: [&str; 5] = [
    "--log-format",
    "--listen",
    "--state-dir",
    "--config",
    "--web.enable-lifecycle",
];

#[test]
fn every_subcommands_help_lists_its_exit_codes_and_only_its_options() {
    for (sub, codes) in SUBCOMMANDS {
        let (code, help, err) = run_cli(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub} --help: {err}");
        // clap wraps long lines: compare with whitespace collapsed.
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("Exit codes"),
            "{sub} --help has no exit codes:\n{help}"
        );
        for c in codes {
            assert!(flat.contains(c), "{sub} --help lacks {c:?}:\n{help}");
        }
        if sub != "run" {
            for option in RUN_ONLY {
                assert!(
                    !help.contains(option),
                    "{sub} --help offers {option}:\n{help}"
                );
            }
        }
    }
    // The top level runs the daemon: its options and exit codes are run's.
    let (_, help, _) = run_cli(&["--help"]);
    assert!(
        help.contains("--log-format") && help.contains("Exit codes"),
        "{help}"
    );
}

#[test]
fn the_log_format_is_refused_where_nothing_logs() {
    let (code, _, err) = run_cli(&["print-config", "--log-format", "json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--log-format"), "{err}");
}
