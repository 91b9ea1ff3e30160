use super::*;

/// Opens an ICMP socket as the daemon would, or says loudly why this machine cannot
/// (not root, group outside `ping_group_range`); under CI that is a failure.
const NEEDS_ICMP: &str =
    "needs an ICMP socket: root (raw) or a group inside net.ipv4.ping_group_range";

/// Opens real sockets, or fails saying what is missing (these tests are ignored by
/// default and run with `--include-ignored`).
fn sockets() -> Arc<IcmpSockets> {
    IcmpSockets::open(SocketKind::Auto, 1).unwrap_or_else(|e| panic!("{NEEDS_ICMP}: {e}"))
}

#[tokio::test]
#[ignore = "needs an ICMP socket: root (raw) or a group inside net.ipv4.ping_group_range"]
async fn loopback_echoes_are_answered_in_sequence() {
    let sockets = sockets();
    let mut prober = sockets.prober(Ipv4Addr::LOCALHOST, 56, 0x7a11);
    for seq in 0..3 {
        match prober.probe(seq, Duration::from_secs(1)).await {
            Echo::Reply { seq: got, rtt } => {
                assert_eq!(got, seq);
                assert!(rtt < Duration::from_millis(50), "{rtt:?}");
            }
            other => panic!("probe {seq}: {other:?}"),
        }
    }
    assert!(prober.late_answers().is_empty());
}

#[tokio::test]
#[ignore = "needs an ICMP socket: root (raw) or a group inside net.ipv4.ping_group_range"]
async fn a_reply_after_the_timeout_is_counted_late_not_as_an_answer() {
    let sockets = sockets();
    let mut prober = sockets.prober(Ipv4Addr::LOCALHOST, 56, 0x7a12);
    // Request 0 goes out and is given up at once, as `probe` does on a timeout: its
    // waiter stays. This task does not yield meanwhile, so the receive task (on this
    // same thread) cannot have handed the reply over yet.
    let key = prober.socket.key(prober.address, prober.ident, 0);
    let (registration, reply) = prober.socket.register(key);
    write_echo_request(&mut prober.request, prober.ident, 0);
    let to = SocketAddr::new(IpAddr::V4(prober.address), 0);
    socket2::SockRef::from(&prober.socket.shared.udp)
        .send_to(&prober.request, &to.into())
        .unwrap();
    let (key, id) = registration.keep();
    prober.timed_out.push_back(TimedOut {
        key,
        id,
        reply,
        sent: Instant::now(),
        sent_wall: SystemTime::now(),
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let next = prober.probe(1, Duration::from_secs(1)).await;
    assert!(matches!(next, Echo::Reply { seq: 1, .. }), "{next:?}");
    let late = prober.late_answers();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].0, 0, "the late reply answers request 0");
    assert!(late[0].1 < Duration::from_millis(200), "{late:?}");
    assert!(prober.late_answers().is_empty());
    assert!(
        prober.socket.shared.waiters.lock().unwrap().is_empty(),
        "no waiter is left behind"
    );
}

#[test]
fn round_trips_use_the_kernel_timestamp_unless_the_wall_clock_stepped() {
    let sent = Instant::now();
    let wall = SystemTime::now();
    let read_at = sent + Duration::from_micros(90);
    let kernel = |us: i64| {
        Some(if us >= 0 {
            wall + Duration::from_micros(us as u64)
        } else {
            wall - Duration::from_micros(us.unsigned_abs())
        })
    };
    let us = |d: Duration| d.as_micros() as i64;
    // The usual case: the kernel saw the reply before the receive task read it.
    assert_eq!(us(round_trip(sent, wall, kernel(60), read_at)), 60);
    // No timestamp: the read time.
    assert_eq!(us(round_trip(sent, wall, None, read_at)), 90);
    // The wall clock stepped back or forward meanwhile: the read time.
    assert_eq!(us(round_trip(sent, wall, kernel(-500), read_at)), 90);
    assert_eq!(us(round_trip(sent, wall, kernel(5_000), read_at)), 90);
}
