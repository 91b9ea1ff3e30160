//! `tunnelkeeper test-page` with the real binary: a marked test page through each sink of
//! the running daemon (or the one named), each sink's answer reported, exit 0 only when
//! every sink took it.

mod common;

use common::{aws_env, dc_config, run_cli, temp_dir, write_temp, AwsDouble, Daemon, VPN_ID as ID};
use serde_json::Value;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:noc-page";

fn start(double: &AwsDouble) -> Daemon {
    let rest = format!(
        "[alerts]\n[[alerts.sink]]\nkind = \"sns\"\ntopic_arn = \"{TOPIC}\"\n\
         [[alerts.sink]]\nkind = \"log\"\n"
    );
    let path = write_temp(
        "paging.toml",
        &dc_config(double, "", ["127.0.2.1", "127.0.2.2"], &rest),
    );
    let state = temp_dir("state");
    Daemon::start(
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &aws_env(),
    )
}

#[test]
fn test_page_proves_each_sink_and_names_the_one_that_refuses() {
    let double = AwsDouble::start();
    double.set_tunnels(ID, "UP", "UP");
    let daemon = start(&double);
    let addr = daemon.addr.to_string();

    let (code, out, err) = run_cli(&["test-page", "--addr", &addr]);
    assert_eq!(code, 0, "every sink accepted it:\n{out}{err}");
    assert!(
        out.contains("ok      sns:noc-page") && out.contains("ok      log"),
        "{out}"
    );
    let published: Vec<Value> = double
        .requests("sns")
        .into_iter()
        .filter(|r| r["failed"].is_null())
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    let subject = published[0]["params"]["Subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[TEST] tunnelkeeper test page from ")
            && subject.ends_with(": no action needed"),
        "{subject}"
    );
    assert!(
        daemon.log().contains("[TEST] tunnelkeeper test page from"),
        "the log sink got it too:\n{}",
        daemon.log()
    );

    double.fail("sns", "server_error", None);
    let (code, out, err) = run_cli(&["test-page", "--addr", &addr]);
    assert_eq!(code, 1, "a sink refused:\n{out}{err}");
    assert!(out.contains("FAILED  sns:noc-page: "), "{out}");
    assert!(out.contains("ok      log"), "{out}");

    let (code, out, err) = run_cli(&["test-page", "--addr", &addr, "--sink", "log"]);
    assert_eq!(code, 0, "only the log sink:\n{out}{err}");
    assert!(!out.contains("sns"), "{out}");

    let (code, _, err) = run_cli(&["test-page", "--addr", &addr, "--sink", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no sink named nope; the sinks are: sns:noc-page, log"),
        "{err}"
    );
}
