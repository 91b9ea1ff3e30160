//! The tunnel lab: a VPC, two tunnel routers and a datacenter as Linux network namespaces,
//! with handles to break and mend each tunnel the way real ones break. Namespaces are named
//! per run (`tk<pid>x<n>-...`) and deleted on drop, also when a test panics; leftovers of
//! crashed runs are swept on the next start.
//!
//! ```text
//! vpc  v-t1 10.1.1.1/30 <-> t1-v 10.1.1.2/30  tun1  t1-d 10.2.1.1/30 <-> d-t1 10.2.1.2/30  dc
//! vpc  v-t2 10.1.2.1/30 <-> t2-v 10.1.2.2/30  tun2  t2-d 10.2.2.1/30 <-> d-t2 10.2.2.2/30  dc
//! dc lo: 172.16.1.10 (pinned, via tun1), 172.16.2.10 (pinned, via tun2),
//!        172.16.9.10 (shared, via tun1: the VGW's active egress tunnel)
//! root tkm<id> 10.199.N.1/30 <-> vpc mgmt 10.199.N.2/30: how the test reaches the vpc
//! ```

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Pinned target behind tunnel 1.
pub const PINNED_A: &str = "172.16.1.10";
/// Pinned target behind tunnel 2.
pub const PINNED_B: &str = "172.16.2.10";
/// Shared target (routed through tunnel 1).
pub const SHARED: &str = "172.16.9.10";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why the lab cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        return Some("the tunnel lab needs root (it creates network namespaces): run the ignored tests as root, e.g. `sudo -E cargo test --locked --test lab -- --include-ignored`".into());
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("setpriv", "util-linux"),
        ("sysctl", "procps"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "the tunnel lab needs `{tool}` (apt-get install {package})"
            ));
        }
    }
    None
}

/// Fails the test unless the lab can run here, saying why. The lab tests are
/// `#[ignore = "needs root ..."]`: this is for when they are asked for.
pub fn need_lab() {
    if let Some(why) = unavailable() {
        panic!("{why}");
    }
}

/// One lab: four namespaces and a management link from the root namespace.
pub struct Lab {
    /// The VPC namespace, where tunnelkeeper and the AWS double run.
    pub vpc: String,
    /// The tunnel router namespaces.
    pub tun: [String; 2],
    /// The datacenter namespace.
    pub dc: String,
    /// The vpc's address on the management link.
    pub mgmt: Ipv4Addr,
    root_if: String,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("lab: {e}");
    }
}

/// Deletes namespaces left by runs whose process is gone.
fn sweep_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("tk") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

impl Lab {
    /// Builds the lab. Panics with the failing command if the kernel refuses a step.
    pub fn new() -> Lab {
        sweep_leftovers();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("tk{pid}x{n}");
        let lab = Lab {
            vpc: format!("{id}-vpc"),
            tun: [format!("{id}-tun1"), format!("{id}-tun2")],
            dc: format!("{id}-dc"),
            mgmt: Ipv4Addr::new(10, 199, ((pid * 7 + n) % 250) as u8, 2),
            root_if: format!("tkm{}", (pid * 7 + n) % 100_000),
        };
        lab.build();
        lab
    }

    fn build(&self) {
        let all = [&self.vpc, &self.tun[0], &self.tun[1], &self.dc];
        for ns in all {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for i in 1..=2 {
            let tun = &self.tun[i - 1];
            let (v, tv, td, d) = (
                format!("v-t{i}"),
                format!("t{i}-v"),
                format!("t{i}-d"),
                format!("d-t{i}"),
            );
            must(&[
                "ip", "link", "add", &v, "netns", &self.vpc, "type", "veth", "peer", "name", &tv,
                "netns", tun,
            ]);
            must(&[
                "ip", "link", "add", &td, "netns", tun, "type", "veth", "peer", "name", &d,
                "netns", &self.dc,
            ]);
            for (ns, dev, addr) in [
                (&self.vpc, &v, format!("10.1.{i}.1/30")),
                (tun, &tv, format!("10.1.{i}.2/30")),
                (tun, &td, format!("10.2.{i}.1/30")),
                (&self.dc, &d, format!("10.2.{i}.2/30")),
            ] {
                must(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev]);
                must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
            must(&[
                "ip",
                "netns",
                "exec",
                tun,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
            must(&[
                "ip",
                "-n",
                tun,
                "route",
                "add",
                "172.16.0.0/16",
                "via",
                &format!("10.2.{i}.2"),
            ]);
            must(&[
                "ip",
                "-n",
                &self.dc,
                "route",
                "add",
                &format!("10.1.{i}.0/30"),
                "via",
                &format!("10.2.{i}.1"),
            ]);
        }
        for target in [PINNED_A, PINNED_B, SHARED] {
            must(&[
                "ip",
                "-n",
                &self.dc,
                "addr",
                "add",
                &format!("{target}/32"),
                "dev",
                "lo",
            ]);
        }
        self.vpc_routes(1);
        self.vpc_routes(2);
        // The management link, from the root namespace into the vpc.
        let root_ip = Ipv4Addr::new(10, 199, self.mgmt.octets()[2], 1);
        must(&[
            "ip",
            "link",
            "add",
            &self.root_if,
            "type",
            "veth",
            "peer",
            "name",
            "mgmt",
            "netns",
            &self.vpc,
        ]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{root_ip}/30"),
            "dev",
            &self.root_if,
        ]);
        must(&["ip", "link", "set", &self.root_if, "up"]);
        must(&[
            "ip",
            "-n",
            &self.vpc,
            "addr",
            "add",
            &format!("{}/30", self.mgmt),
            "dev",
            "mgmt",
        ]);
        must(&["ip", "-n", &self.vpc, "link", "set", "mgmt", "up"]);
    }

    /// The vpc's routes through tunnel `i` (deleted by the kernel when the link goes down).
    fn vpc_routes(&self, i: usize) {
        let via = format!("10.1.{i}.2");
        must(&[
            "ip",
            "-n",
            &self.vpc,
            "route",
            "replace",
            &format!("172.16.{i}.0/24"),
            "via",
            &via,
        ]);
        if i == 1 {
            must(&[
                "ip",
                "-n",
                &self.vpc,
                "route",
                "replace",
                "172.16.9.0/24",
                "via",
                &via,
            ]);
        }
    }

    /// The vpc's address as the test reaches it.
    pub fn reach(&self) -> IpAddr {
        IpAddr::V4(self.mgmt)
    }

    /// A command run inside namespace `ns`.
    pub fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    fn nft(&self, i: usize, rule: &str) {
        self.nft_at(i, "forward", rule);
    }

    /// Replaces tunnel `i`'s lab table with one chain on `hook` holding `rule`.
    fn nft_at(&self, i: usize, hook: &str, rule: &str) {
        let tun = &self.tun[i - 1];
        let _ = run(&[
            "ip", "netns", "exec", tun, "nft", "delete", "table", "inet", "lab",
        ]);
        must(&[
            "ip", "netns", "exec", tun, "nft", "add", "table", "inet", "lab",
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            tun,
            "nft",
            &format!(
                "add chain inet lab fw {{ type filter hook {hook} priority 0; policy accept; }}"
            ),
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            tun,
            "nft",
            &format!("add rule inet lab fw {rule}"),
        ]);
    }

    /// Drops everything to tunnel `i`'s pinned prefix in its router.
    pub fn blackhole(&self, i: usize) {
        self.nft(i, &format!("ip daddr 172.16.{i}.0/24 drop"));
    }

    /// Cuts tunnel `i` whole: its router drops everything it would forward to the
    /// datacenter, the shared target's traffic too when its route takes this tunnel.
    pub fn cut(&self, i: usize) {
        self.nft(i, "ip daddr 172.16.0.0/16 drop");
    }

    /// Moves the vpc's route to the shared target to tunnel `i`, as the virtual private
    /// gateway does when BGP withdraws it from the failed tunnel (a failover).
    pub fn route_shared_via(&self, i: usize) {
        must(&[
            "ip",
            "-n",
            &self.vpc,
            "route",
            "replace",
            "172.16.9.0/24",
            "via",
            &format!("10.1.{i}.2"),
        ]);
    }

    /// Makes the datacenter drop echo requests to the shared target (a firewall change):
    /// `true` drops, `false` restores.
    pub fn shared_drops_icmp(&self, drop: bool) {
        let dc = &self.dc;
        let _ = run(&[
            "ip", "netns", "exec", dc, "nft", "delete", "table", "inet", "labdc",
        ]);
        if !drop {
            return;
        }
        must(&[
            "ip", "netns", "exec", dc, "nft", "add", "table", "inet", "labdc",
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            dc,
            "nft",
            "add chain inet labdc in { type filter hook input priority 0; policy accept; }",
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            dc,
            "nft",
            &format!("add rule inet labdc in ip daddr {SHARED} icmp type echo-request drop"),
        ]);
    }

    /// Drops `percent` % of the packets to tunnel `i`'s pinned prefix.
    pub fn loss(&self, i: usize, percent: u32) {
        self.nft(
            i,
            &format!("ip daddr 172.16.{i}.0/24 numgen random mod 100 < {percent} drop"),
        );
    }

    /// Makes tunnel `i`'s router answer probes to its pinned prefix with the ICMP error
    /// `reject with icmp type <icmp_type>` sends (`admin-prohibited`, `host-unreachable`).
    pub fn reject(&self, i: usize, icmp_type: &str) {
        self.nft(
            i,
            &format!("ip daddr 172.16.{i}.0/24 reject with icmp type {icmp_type}"),
        );
    }

    /// Makes tunnel `i`'s router answer "TTL exceeded in transit": packets to its pinned
    /// prefix arrive with TTL 1, which the router may not forward.
    pub fn expire_ttl(&self, i: usize) {
        self.nft_at(
            i,
            "prerouting",
            &format!("ip daddr 172.16.{i}.0/24 ip ttl set 1"),
        );
    }

    /// Narrows tunnel `i`'s onward link (router to datacenter) to `mtu` bytes: packets
    /// larger than that with DF set get "fragmentation needed" from the router.
    pub fn narrow_onward_link(&self, i: usize, mtu: u32) {
        must(&[
            "ip",
            "-n",
            &self.tun[i - 1],
            "link",
            "set",
            &format!("t{i}-d"),
            "mtu",
            &mtu.to_string(),
        ]);
    }

    /// Sets the MTU of the vpc's own link into tunnel `i`.
    pub fn set_vpc_link_mtu(&self, i: usize, mtu: u32) {
        must(&[
            "ip",
            "-n",
            &self.vpc,
            "link",
            "set",
            &format!("v-t{i}"),
            "mtu",
            &mtu.to_string(),
        ]);
    }

    /// Makes tunnel `i`'s router drop the "fragmentation needed" errors it sends: a path-MTU
    /// black hole.
    pub fn drop_frag_needed(&self, i: usize) {
        self.nft_at(
            i,
            "output",
            "icmp type destination-unreachable icmp code 4 drop",
        );
    }

    /// Undoes `blackhole`, `cut`, `loss`, `reject`, `expire_ttl` and `drop_frag_needed`
    /// (a moved shared route stays where it is).
    pub fn mend(&self, i: usize) {
        let _ = run(&[
            "ip",
            "netns",
            "exec",
            &self.tun[i - 1],
            "nft",
            "delete",
            "table",
            "inet",
            "lab",
        ]);
    }

    /// Takes the vpc's link into tunnel `i` down (which also deletes its routes).
    pub fn link_down(&self, i: usize) {
        must(&[
            "ip",
            "-n",
            &self.vpc,
            "link",
            "set",
            &format!("v-t{i}"),
            "down",
        ]);
    }

    /// Brings the link back up and restores the routes the kernel deleted.
    pub fn link_up(&self, i: usize) {
        must(&[
            "ip",
            "-n",
            &self.vpc,
            "link",
            "set",
            &format!("v-t{i}"),
            "up",
        ]);
        self.vpc_routes(i);
    }

    /// Lets every group use unprivileged (DGRAM) ICMP in the vpc namespace.
    pub fn allow_unprivileged_ping(&self) {
        must(&[
            "ip",
            "netns",
            "exec",
            &self.vpc,
            "sysctl",
            "-qw",
            "net.ipv4.ping_group_range=0 2147483647",
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.root_if]);
        for ns in [&self.vpc, &self.tun[0], &self.tun[1], &self.dc] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}
