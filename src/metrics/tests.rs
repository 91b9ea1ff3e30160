//! Tests of the metric families and their rendering.

mod families {
    use std::time::Duration;

    use super::super::render::*;
    use super::super::*;

    fn metrics() -> Metrics {
        let config = Config::parse(
            r#"
            [[vpn]]
            name = "dc"
              [[vpn.tunnel]]
              name = "dc-a"
              targets = ["172.16.1.10"]
              [[vpn.tunnel]]
              name = "dc-b"
              targets = ["172.16.2.10"]
            "#,
            "test",
        )
        .unwrap();
        let reload = ReloadStatus {
            successful: true,
            last_success: Timestamp::from_millis(0),
        };
        Metrics::new(&config, "raw", 0, reload)
    }

    fn lines_of(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_registry_families_render_as_the_prometheus_crate_encodes_them() {
        use prometheus::Encoder;
        let m = metrics();
        m.stray_reply();
        m.notification("log", "failed");
        m.record_send_delay(Duration::from_micros(700));
        m.record_send_delay(Duration::from_secs(3));
        let families = m.registry.gather();
        let mut theirs = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&families, &mut theirs)
            .unwrap();
        let mut ours = String::new();
        write_gathered(&mut ours, &families);
        assert_eq!(ours, String::from_utf8(theirs).unwrap());
    }

    #[test]
    fn a_reload_seeds_the_wire_counts_so_that_late_replies_do_not_turn_counters_back() {
        use crate::messages::ProbeOutcome;
        use crate::probe::stats::TargetStats;
        let old = metrics();
        let mut stats = TargetStats::default();
        let timeout = ProbeOutcome::Timeout {
            after: Duration::from_millis(100),
        };
        for _ in 0..3 {
            stats.record(&timeout);
            old.record_probe(TargetId(0), &timeout, 1);
        }
        // Two of them were late, not lost: /status says so; the counters cannot.
        stats.record_late(Duration::from_millis(150));
        stats.record_late(Duration::from_millis(150));
        let before = String::from_utf8(old.render()).unwrap();
        let new = metrics();
        new.seed(TargetId(0), &stats.summary());
        let after = String::from_utf8(new.render()).unwrap();
        let timeouts = |text: &str| {
            lines_of(text, "tunnelkeeper_probe_lost_total{")
                .into_iter()
                .find(|l| l.contains("172.16.1.10") && l.contains("reason=\"timeout\""))
                .unwrap()
        };
        assert_eq!(timeouts(&before), timeouts(&after));
        assert!(timeouts(&after).ends_with(" 3"), "{after}");
        assert_eq!(stats.summary().replies, 2);
    }

    #[test]
    fn a_reload_carries_the_process_wide_counters_over() {
        let old = metrics();
        for _ in 0..3 {
            old.stray_reply();
        }
        old.notification("log", "delivered");
        old.notification("log", "delivered");
        let new = metrics();
        new.carry_counters(&old);
        new.stray_reply();
        let text = String::from_utf8(new.render()).unwrap();
        assert!(
            text.contains("tunnelkeeper_probe_stray_replies_total 4\n"),
            "{text}"
        );
        assert!(
            lines_of(&text, "tunnelkeeper_notifications_total{").contains(
                &"tunnelkeeper_notifications_total{outcome=\"delivered\",sink=\"log\"} 2"
                    .to_string()
            ),
            "{text}"
        );
    }

    #[test]
    fn per_target_families_count_every_outcome() {
        let m = metrics();
        let reply = |ms| ProbeOutcome::Reply {
            rtt: Duration::from_micros(ms),
        };
        m.record_probe(TargetId(0), &reply(80), 0);
        m.record_probe(TargetId(0), &reply(3_000), 0);
        m.record_probe(TargetId(0), &reply(9_000_000), 0);
        let timeout = ProbeOutcome::Timeout {
            after: Duration::from_secs(1),
        };
        m.record_probe(TargetId(0), &timeout, 1);
        m.set_target(
            TargetId(0),
            &Verdict::Up {
                since: Timestamp::from_millis(0),
            },
        );
        let text = String::from_utf8(m.render()).unwrap();
        let labels =
            r#"address="172.16.1.10",proto="icmp",target="172.16.1.10",tunnel="dc-a",vpn="dc""#;
        for line in [
            format!("tunnelkeeper_probe_sent_total{{{labels}}} 4"),
            format!("tunnelkeeper_probe_replies_total{{{labels}}} 3"),
            format!("tunnelkeeper_probe_lost_total{{{labels},reason=\"timeout\"}} 1"),
            format!("tunnelkeeper_probe_lost_total{{{labels},reason=\"icmp_error\"}} 0"),
            format!("tunnelkeeper_probe_consecutive_lost{{{labels}}} 1"),
            format!("tunnelkeeper_target_up{{{labels}}} 1"),
            format!("tunnelkeeper_probe_last_rtt_seconds{{{labels}}} 9"),
            "tunnelkeeper_probe_sent_total{address=\"172.16.2.10\",proto=\"icmp\",target=\"172.16.2.10\",tunnel=\"dc-b\",vpn=\"dc\"} 0".to_string(),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing in\n{text}");
        }
        // Cumulative buckets; the 9 s reply is above the last bucket, in +Inf only.
        let buckets = lines_of(
            &text,
            &format!("tunnelkeeper_probe_rtt_seconds_bucket{{{labels}"),
        );
        let counts: Vec<&str> = buckets
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(
            counts,
            ["1", "1", "1", "1", "1", "2", "2", "2", "2", "2", "2", "2", "2", "2", "3"]
        );
        assert!(buckets[0].contains("le=\"0.0001\"") && buckets[14].contains("le=\"+Inf\""));
        assert!(text.contains(&format!(
            "tunnelkeeper_probe_rtt_seconds_count{{{labels}}} 3\n"
        )));
        let sum = lines_of(
            &text,
            "tunnelkeeper_probe_rtt_seconds_sum{address=\"172.16.1.10\"",
        );
        let sum: f64 = sum[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 9.00308).abs() < 1e-9, "{sum}");
        // One HELP and TYPE per family.
        assert_eq!(
            lines_of(&text, "# TYPE tunnelkeeper_probe_rtt_seconds ").len(),
            1
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("plain"), "plain");
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn send_delays_land_in_their_histogram() {
        let m = metrics();
        m.record_send_delay(Duration::from_micros(300));
        m.record_send_delay(Duration::from_millis(30));
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("tunnelkeeper_probe_send_delay_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("tunnelkeeper_probe_send_delay_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("tunnelkeeper_probe_send_delay_seconds_count 2\n"));
    }
}

mod rendering {
    use super::super::*;

    #[test]
    fn large_renders_come_in_pieces_and_stop_when_the_client_goes() {
        let mut toml = String::new();
        for i in 0..3000 {
            toml.push_str(&format!(
                "[[target]]\naddress = \"127.1.{}.{}\"\n",
                i / 250,
                i % 250 + 1
            ));
        }
        let config = Config::parse(&toml, "test").unwrap();
        let reload = ReloadStatus {
            successful: true,
            last_success: Timestamp::from_millis(0),
        };
        let m = Metrics::new(&config, "raw", 0, reload);
        let mut pieces = Vec::new();
        assert!(m.render_to(|piece| {
            pieces.push(piece);
            true
        }));
        assert!(pieces.len() > 4, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() < RENDER_CHUNK + 1024));
        assert!(pieces.iter().all(|p| p.ends_with('\n')));
        assert_eq!(pieces.concat().into_bytes(), m.render());

        let mut calls = 0;
        let complete = m.render_to(|_| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1, "a refused piece ends the render");
        assert!(!complete);
    }
}
