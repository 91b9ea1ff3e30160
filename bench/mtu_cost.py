"""What path-MTU probing ([mtu]) costs, run by `bench/run.py --mtu`.

N loopback targets pinned in two layouts: a VGW's four tunnels (two connections, N/4
targets each: four MTU tasks, whatever N), and the worst case, a tunnel per target (N/2
connections of two tunnels: N MTU tasks). The worst case runs up to 1,000 only: at
10,000 tunnels the daemon does not keep its keepalive schedule even with [mtu] off.
Keepalive pings at 1 s, [mtu] interval 10 s (the shortest the config allows, six times
the default). Three runs per size and layout, unprivileged DGRAM as `nobody`: [mtu] off;
on over a full path (loopback: every size crosses, 7 probes per measurement); on over a
black hole at 1300 bytes (nftables drops larger echo requests, so each measurement waits
out its lost probes: 17 probes, 10 of them lost, each lost size being sent twice). Measured: CPU, peak RSS, the MTU probes
on the wire (echo requests over 100 bytes to the targets), the keepalive schedule slip
and send delay, and what the daemon found.
"""

import os
import shutil
import subprocess
import tempfile
import time

import run as h

MTU_INTERVAL = "10s"
BLACK_HOLE = 1300
FOUR_TUNNELS = "4 tunnels"
PER_TARGET = "a tunnel per target"
PER_TARGET_UP_TO = 1000


def config(hosts, mtu, layout):
    lines = ['[probe]\ninterval = "1s"\ntimeout = "1s"\nsocket = "dgram"\n']
    if mtu:
        lines.append(f'[mtu]\nenabled = true\ninterval = "{MTU_INTERVAL}"\n')
    else:
        lines.append("[mtu]\nenabled = false\n")
    if layout == FOUR_TUNNELS:
        groups = [hosts[i::4] for i in range(4)]
    else:
        groups = [[host] for host in hosts]
    for c in range(0, len(groups), 2):
        lines.append(f'[[vpn]]\nname = "c{c}"\n')
        for t, group in enumerate(groups[c:c + 2]):
            targets = ", ".join(f'"{host}"' for host in group)
            lines.append(f'  [[vpn.tunnel]]\n  name = "c{c}-t{t}"\n  targets = [{targets}]\n')
    return "".join(lines)


class MtuWire:
    """Counts the path-MTU probes leaving for the bench's targets (echo requests over 100
    bytes: the keepalive ones are 84), and drops those over BLACK_HOLE bytes if asked."""

    TABLE = f"tkmtu{os.getpid()}"

    def __init__(self, black_hole):
        drop = f"  ip daddr 127.1.0.0/16 icmp type echo-request ip length > {BLACK_HOLE} drop\n" if black_hole else ""
        script = (f"table inet {self.TABLE} {{\n chain out {{\n  type filter hook output priority -10; policy accept;\n"
                  f"  ip daddr 127.1.0.0/16 icmp type echo-request ip length > 100 counter\n{drop} }}\n}}\n")
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)

    def read(self):
        return h.WireCounter.read(self)

    def close(self):
        subprocess.run(["nft", "delete", "table", "inet", self.TABLE], check=False)


def run_one(args, hosts, workdir, layout, variant):
    port = h.free_port()
    path = os.path.join(workdir, f"mtu-{len(hosts)}-{layout}-{variant}.toml".replace(" ", "-"))
    with open(path, "w") as f:
        f.write(config(hosts, variant != "off", layout))
    os.chmod(path, 0o644)
    state = tempfile.mkdtemp(prefix="tk-bench-mtu-")
    shutil.chown(state, "nobody", "nogroup")
    wire = MtuWire(variant == "black hole")
    proc = subprocess.Popen(
        h.as_user("dgram") + [args.binary, "run", "--config", path, "--listen", f"127.0.0.1:{port}", "--state-dir", state],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn", "AWS_EC2_METADATA_DISABLED": "true"}, preexec_fn=h.more_files)
    try:
        h.wait_http(port, "/-/ready", limit=120, proc=proc)
        time.sleep(args.warmup)
        m0 = h.http_get(port, "/metrics")
        w0, t0, cpu0 = wire.read(), time.time(), h.cpu_seconds(proc.pid)
        time.sleep(args.duration)
        w1, t1, cpu1 = wire.read(), time.time(), h.cpu_seconds(proc.pid)
        m1 = h.http_get(port, "/metrics")
        if proc.poll() is not None:
            raise SystemExit(f"tunnelkeeper exited with status {proc.returncode} while measured")
        seconds = t1 - t0
        sent = h.metric_sum(m1, "tunnelkeeper_probe_sent_total") - h.metric_sum(m0, "tunnelkeeper_probe_sent_total")
        d0 = dict(h.histogram(m0, "tunnelkeeper_probe_send_delay_seconds"))
        delays = [(le, c - d0.get(le, 0)) for le, c in h.histogram(m1, "tunnelkeeper_probe_send_delay_seconds")]
        sizes = [float(l.rsplit(" ", 1)[1]) for l in m1.splitlines()
                 if l.startswith("tunnelkeeper_tunnel_path_mtu_bytes{")]
        firing = sum(float(l.rsplit(" ", 1)[1]) for l in m1.splitlines()
                     if l.startswith("tunnelkeeper_alerts_firing{") and 'alert="MtuBlackHole"' in l)
        r = {
            "layout": layout,
            "tunnels": 4 if layout == FOUR_TUNNELS else len(hosts),
            "variant": variant,
            "n": len(hosts),
            "seconds": seconds,
            "cpu_pct": 100.0 * (cpu1 - cpu0) / seconds,
            "rss": h.peak_rss_mib(proc.pid),
            "mtu_probes_per_s": (w1 - w0) / seconds,
            "slip_pct": max(0.0, 100.0 * (1 - sent / (len(hosts) * seconds))),
            "delay_p99": h.quantile_bound(delays, 0.99),
            "measured": sum(1 for s in sizes if s > 0),
            "found": sorted({int(s) for s in sizes if s > 0}),
            "firing": int(firing),
        }
        print(f"  MTU N={len(hosts)} {layout} {variant}: {r}", flush=True)
        return r
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        wire.close()


def measure(args, workdir):
    rows = []
    for n in args.size_list:
        hosts = h.targets(n)
        layouts = [FOUR_TUNNELS] + ([PER_TARGET] if n <= PER_TARGET_UP_TO else [])
        for layout in layouts:
            for variant in ["off", "full path", "black hole"]:
                print(f"measuring path-MTU probing: {n} targets, {layout}, {variant}", flush=True)
                rows.append(run_one(args, hosts, workdir, layout, variant))
    return rows


def report(args, rows):
    f = h.fmt
    lines = [
        f"Path-MTU probing: N targets pinned in a VGW's 4 tunnels (4 MTU tasks), or one tunnel per target "
        f"(N MTU tasks, the worst case, up to {PER_TARGET_UP_TO:,}); keepalive pings at 1 s; "
        f"[mtu] interval {MTU_INTERVAL} (the minimum; the default 60s sends a sixth of the MTU probes), "
        f"DGRAM as nobody, {args.duration:.0f} s measured after {args.warmup:.0f} s. \"black hole\": nftables drops "
        f"echo requests over {BLACK_HOLE} bytes. CPU % is of one core.",
        "",
        "| targets | tunnels | [mtu] | CPU % | peak RSS MiB | MTU probes/s | keepalive slip % | send delay p99 ≤ | tunnels measured | path MTU found | MtuBlackHole firing |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        found = ", ".join(str(x) for x in r["found"]) or "-"
        lines.append(
            f"| {r['n']:,} | {r['tunnels']:,} | {r['variant']} | {f(r['cpu_pct'], 1)} | {f(r['rss'], 0)} | {f(r['mtu_probes_per_s'], 1)} | "
            f"{f(r['slip_pct'])} | {f(r['delay_p99'] * 1000, 1)} ms | {r['measured']:,} | {found} | {r['firing']:,} |")
    return "\n".join(lines) + "\n"


def write(out, body):
    h.write_section(out, "bench:mtu", body)
