//! Lab scenarios of what the data plane says besides "reply" and "timeout": tunnel routers
//! answering with ICMP errors (admin-prohibited, host-unreachable, TTL exceeded) and a
//! tunnel whose onward link is narrower than the expected path MTU, with its router's
//! "fragmentation needed" sent or dropped. Each runs as root on a raw socket and as nobody
//! on a DGRAM socket and must give the same results.

use super::*;

/// What the daemon said of tunnel A's target once its router turned the probes away with
/// an ICMP error: the target's /status reason, the probes lost as `icmp_error` and as
/// `timeout` on /metrics, and the page subjects.
struct IcmpErrorReading {
    reason: String,
    icmp_errors: u64,
    timeouts: u64,
    pages: Vec<String>,
}

fn lost_on_tunnel_a(metrics: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("tunnelkeeper_probe_lost_total{"))
        .filter(|l| l.contains("tunnel=\"dc-a\"") && l.contains(&format!("reason=\"{reason}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn icmp_error_on_tunnel_a(mode: Mode, break_a: impl Fn(&Lab), expected: &str) -> IcmpErrorReading {
    let s = setup(mode, "");
    break_a(&s.lab);
    let target = |s: &Scenario| s.status()["connections"][0]["tunnels"][0]["targets"][0].clone();
    let start = Instant::now();
    while target(&s)["state"] != "down" && start.elapsed() < BOUND * 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let down = target(&s);
    assert_eq!(
        down["state"],
        "down",
        "{mode:?}: {down}; log:\n{}",
        s.daemon.log()
    );
    let reason = down["reason"].as_str().unwrap().to_string();
    assert!(
        reason.ends_with(expected),
        "{mode:?}: the reason names the error and the router: {reason}"
    );
    let pages = s.wait_pages(1, BOUND);
    let metrics = s.daemon.get("/metrics").1;
    IcmpErrorReading {
        reason,
        icmp_errors: lost_on_tunnel_a(&metrics, "icmp_error"),
        timeouts: lost_on_tunnel_a(&metrics, "timeout"),
        pages,
    }
}

/// Runs the scenario as root on a raw socket and as nobody on a DGRAM socket, and checks
/// that both saw the same ICMP errors, said the same and paged the same.
fn same_icmp_error_in_both_socket_modes(break_a: impl Fn(&Lab), expected: &str) {
    let raw = icmp_error_on_tunnel_a(Mode::RawRoot, &break_a, expected);
    let dgram = icmp_error_on_tunnel_a(Mode::DgramUnprivileged, &break_a, expected);
    for (mode, r) in [("raw", &raw), ("dgram", &dgram)] {
        assert!(
            r.icmp_errors >= DOWN_AFTER as u64,
            "{mode}: counted as icmp_error: {}",
            r.icmp_errors
        );
        assert_eq!(r.timeouts, 0, "{mode}: no probe timed out");
        assert_eq!(r.pages.len(), 1, "{mode}: {:?}", r.pages);
    }
    assert_eq!(raw.reason, dgram.reason);
    assert_eq!(raw.pages, dgram.pages);
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_router_rejecting_as_admin_prohibited_is_an_icmp_error_in_both_socket_modes() {
    need_lab();
    same_icmp_error_in_both_socket_modes(
        |lab| lab.reject(1, "admin-prohibited"),
        "last: administratively prohibited (code 13) (ICMP from 10.1.1.2)",
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_router_rejecting_as_host_unreachable_is_an_icmp_error_in_both_socket_modes() {
    need_lab();
    same_icmp_error_in_both_socket_modes(
        |lab| lab.reject(1, "host-unreachable"),
        "last: host unreachable (code 1) (ICMP from 10.1.1.2)",
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_router_answering_ttl_exceeded_is_an_icmp_error_in_both_socket_modes() {
    need_lab();
    same_icmp_error_in_both_socket_modes(
        |lab| lab.expire_ttl(1),
        "last: TTL exceeded in transit (ICMP from 10.1.1.2)",
    );
}

/// The shortest interval the config allows: the first measurement of each tunnel comes
/// within it.
const MTU_LAB: &str = "\n[mtu]\ninterval = \"10s\"\n";

/// What /status says of each tunnel's path MTU once both are measured.
fn path_mtus(s: &Scenario) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let tunnels: Vec<Value> = s.status()["connections"][0]["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["path_mtu"].clone())
            .collect();
        if tunnels.iter().all(|m| !m.is_null()) || start.elapsed() > Duration::from_secs(25) {
            return tunnels;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn path_mtu_metric(s: &Scenario, tunnel: &str) -> u64 {
    s.daemon
        .get("/metrics")
        .1
        .lines()
        .find(|l| {
            l.starts_with("tunnelkeeper_tunnel_path_mtu_bytes{")
                && l.contains(&format!("tunnel=\"{tunnel}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no path MTU series for {tunnel}"))
}

/// What the daemon said of the tunnels' path MTU: each tunnel's (bytes, found), the pages
/// and the advisory codes with their tunnel.
struct MtuReadings {
    tunnels: Vec<(u64, String)>,
    pages: Vec<String>,
    advisories: Vec<String>,
}

/// Tunnel A's onward link has MTU 1300; its router's "fragmentation needed" errors are
/// dropped (`black_hole`) or sent.
fn narrow_tunnel_a(mode: Mode, black_hole: bool) -> MtuReadings {
    let lab = Lab::new();
    lab.narrow_onward_link(1, 1300);
    if black_hole {
        lab.drop_frag_needed(1);
    } else {
        // The vpc's kernel learns the path MTU (1300) before the daemon starts: its
        // probes must still go out whole, not be fragmented to fit (IP_PMTUDISC_PROBE).
        let out = lab
            .exec(&lab.vpc, "ping")
            .args(["-c", "1", "-W", "1", "-M", "do", "-s", "1418", PINNED_A])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("mtu = 1300"), "ping learns the MTU: {said}");
    }
    let s = setup_in(lab, mode, "", false, MTU_LAB);
    let readings: Vec<(u64, String)> = path_mtus(&s)
        .iter()
        .map(|m| {
            (
                m["bytes"].as_u64().unwrap_or(0),
                m["found"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect();
    assert_eq!(path_mtu_metric(&s, "dc-a"), readings[0].0, "{mode:?}");
    assert_eq!(path_mtu_metric(&s, "dc-b"), readings[1].0, "{mode:?}");
    // Small pings pass: the tunnel is up whatever its MTU.
    let (status, body) = s.health();
    assert_eq!(status, 200, "{mode:?}: {body}");
    let pages = s.wait_pages(usize::from(black_hole), Duration::from_secs(3));
    let advisories = s.status()["advisories"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} {}",
                a["code"].as_str().unwrap(),
                a["tunnel"].as_str().unwrap()
            )
        })
        .collect();
    MtuReadings {
        tunnels: readings,
        pages,
        advisories,
    }
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_path_mtu_black_hole_is_measured_in_both_socket_modes() {
    need_lab();
    for mode in [Mode::RawRoot, Mode::DgramUnprivileged] {
        let r = narrow_tunnel_a(mode, true);
        assert_eq!(
            r.tunnels,
            vec![(1300, "silent".into()), (1500, "reply".into())],
            "{mode:?}"
        );
        assert_eq!(
            r.pages,
            vec!["[WARNING] MtuBlackHole dc-a: packets over 1300 bytes vanish without ICMP; expected 1446".to_string()],
            "{mode:?}: tunnel A pages, tunnel B does not"
        );
        assert!(r.advisories.is_empty(), "{mode:?}: {:?}", r.advisories);
    }
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces), iputils-ping"]
fn a_narrow_tunnel_whose_router_says_frag_needed_is_measured_in_both_socket_modes() {
    need_lab();
    common::need_tool("ping", "iputils-ping");
    for mode in [Mode::RawRoot, Mode::DgramUnprivileged] {
        let r = narrow_tunnel_a(mode, false);
        assert_eq!(
            r.tunnels,
            vec![(1300, "frag_needed".into()), (1500, "reply".into())],
            "{mode:?}"
        );
        assert!(r.pages.is_empty(), "{mode:?}: no page: {:?}", r.pages);
        assert_eq!(
            r.advisories,
            vec!["path_mtu_below_expected dc-a".to_string()],
            "{mode:?}"
        );
    }
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_host_side_link_narrower_than_expected_is_the_hosts_own_limit_not_a_black_hole() {
    need_lab();
    for mode in [Mode::RawRoot, Mode::DgramUnprivileged] {
        let lab = Lab::new();
        // The vpc's own link into tunnel A: the kernel refuses larger DF packets itself.
        lab.set_vpc_link_mtu(1, 1300);
        let s = setup_in(lab, mode, "", false, MTU_LAB);
        let a = &path_mtus(&s)[0];
        assert_eq!(
            (a["bytes"].as_u64(), a["found"].as_str()),
            (Some(1300), Some("local")),
            "{mode:?}: {a}"
        );
        std::thread::sleep(Duration::from_secs(1));
        assert!(s.pages().is_empty(), "{mode:?}: no page: {:?}", s.pages());
    }
}
