#!/usr/bin/env python3
"""tunnelkeeper benchmark harness.

Runs tunnelkeeper and prometheus-smokeping-prober on the same loopback targets at the same
interval, one after the other, both with raw ICMP sockets (run as root), and measures for
each: CPU seconds per 1,000 probes, peak RSS, probes sent against expected (schedule slip),
replies lost on a loss-free path (false loss), and the ratio tunnelkeeper / peer. Then RTT
fidelity against ping, and HTTP under load with wrk. Writes the tables into BENCHMARKS.md
between the `bench:start` and `bench:end` markers (the rest of the file is kept).

    sudo python3 bench/run.py                 # full run: installs peers, release build
    python3 bench/run.py --smoke --binary target/debug/tunnelkeeper --no-install --out /tmp/b.md

Every number comes from this run; nothing is typed by hand.
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def targets(n):
    """n distinct loopback addresses (all of 127.0.0.0/8 answers ping), avoiding .0/.255."""
    out = []
    a = 1
    while len(out) < n:
        for b in range(1, 255):
            out.append(f"127.1.{a}.{b}")
            if len(out) == n:
                break
        a += 1
    return out


def http_get(port, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(port, path, limit=60):
    start = time.time()
    while time.time() - start < limit:
        try:
            return http_get(port, path)
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on 127.0.0.1:{port}{path} within {limit}s")


class Tool:
    """A prober under test, started as a child process."""

    proc: subprocess.Popen

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Tunnelkeeper(Tool):
    name = "tunnelkeeper"

    def __init__(self, binary, hosts, workdir):
        self.port = free_port()
        config = os.path.join(workdir, f"tk-{len(hosts)}.toml")
        with open(config, "w") as f:
            f.write('[probe]\ninterval = "1s"\ntimeout = "1s"\nsocket = "raw"\n')
            for h in hosts:
                f.write(f'[[target]]\naddress = "{h}"\n')
        state = tempfile.mkdtemp(prefix="tk-bench-state-")
        self.proc = subprocess.Popen(
            [binary, "run", "--config", config, "--listen", f"127.0.0.1:{self.port}", "--state-dir", state],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        wait_http(self.port, "/-/ready")

    def counts(self):
        m = http_get(self.port, "/metrics")
        return metric_sum(m, "tunnelkeeper_probe_sent_total"), metric_sum(m, "tunnelkeeper_probe_replies_total")



class Smokeping(Tool):
    name = "smokeping_prober"

    def __init__(self, binary, hosts, workdir):
        self.port = free_port()
        config = os.path.join(workdir, f"sp-{len(hosts)}.yml")
        with open(config, "w") as f:
            f.write("targets:\n- hosts:\n")
            for h in hosts:
                f.write(f"  - {h}\n")
            f.write("  interval: 1s\n  network: ip4\n  protocol: icmp\n  size: 56\n")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}", "--privileged",
             "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(self.port, "/metrics")
        except SystemExit:
            self.stop()
            raise

    def counts(self):
        m = http_get(self.port, "/metrics")
        return metric_sum(m, "smokeping_requests_total"), metric_sum(m, "smokeping_response_duration_seconds_count")



def measure(tool, warmup, duration):
    time.sleep(warmup)
    sent0, recv0 = tool.counts()
    cpu0, t0 = cpu_seconds(tool.proc.pid), time.time()
    time.sleep(duration)
    sent1, recv1 = tool.counts()
    cpu1, t1 = cpu_seconds(tool.proc.pid), time.time()
    sent, recv = sent1 - sent0, recv1 - recv0
    return {
        "sent": sent,
        "replies": recv,
        "seconds": t1 - t0,
        "cpu": cpu1 - cpu0,
        "rss": peak_rss_mib(tool.proc.pid),
    }


def run_size(args, n, workdir):
    hosts = targets(n)
    rows = {}
    for cls, binary in ((Tunnelkeeper, args.binary), (Smokeping, args.smokeping)):
        try:
            tool = cls(binary, hosts, workdir)
        except SystemExit as e:
            # A tool that cannot even serve its metrics at this size is a result too.
            rows[cls.name] = {"failed": str(e)}
            print(f"  N={n} {cls.name}: FAILED: {e}", flush=True)
            subprocess.run(["pkill", "-f", f"{os.path.basename(binary)}"], check=False)
            continue
        try:
            r = measure(tool, args.warmup, args.duration)
        except Exception as e:
            rows[cls.name] = {"failed": f"stopped answering /metrics while measured ({e})"}
            print(f"  N={n} {cls.name}: FAILED: {e}", flush=True)
            continue
        finally:
            tool.stop()
        expected = n * r["seconds"]
        r["expected"] = expected
        r["slip_pct"] = max(0.0, 100.0 * (1 - r["sent"] / expected)) if expected else 0.0
        r["false_loss_pct"] = 100.0 * (1 - r["replies"] / r["sent"]) if r["sent"] else float("nan")
        r["cpu_per_1000"] = 1000.0 * r["cpu"] / r["sent"] if r["sent"] else float("nan")
        r["cpu_pct"] = 100.0 * r["cpu"] / r["seconds"]
        rows[cls.name] = r
        print(f"  N={n} {cls.name}: {json.dumps({k: round(v, 4) for k, v in r.items()})}", flush=True)
    return rows


def rtt_fidelity(args, workdir):
    tk = Tunnelkeeper(args.binary, ["127.0.0.1"], workdir)
    try:
        ping = subprocess.run(["ping", "-n", "-q", "-c", str(args.rtt_count), "-i", "0.2", "127.0.0.1"],
                              capture_output=True, text=True)
        per = subprocess.run(["ping", "-n", "-c", str(args.rtt_count), "-i", "0.2", "127.0.0.1"],
                             capture_output=True, text=True)
        times = [float(x) / 1000 for x in re.findall(r"time=([\d.]+) ms", per.stdout)]
        time.sleep(max(0, args.rtt_count * 0.2))
        status = json.loads(http_get(tk.port, "/status"))
        t = status["shared_targets"][0]
        return {
            "ping_p50": statistics.median(times) if times else float("nan"),
            "ping_p99": sorted(times)[int(0.99 * (len(times) - 1))] if times else float("nan"),
            "tk_p50": t["rtt_p50_seconds"],
            "tk_p99": t["rtt_p99_seconds"],
            "tk_samples": t["recent_probes"],
            "ping_samples": len(times),
            "ping_summary": ping.stdout.strip().splitlines()[-1] if ping.stdout else "",
        }
    finally:
        tk.stop()


def wrk(port, path, seconds, connections):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p99": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
    }


def http_load(args, n, workdir):
    tk = Tunnelkeeper(args.binary, targets(n), workdir)
    try:
        time.sleep(args.warmup)
        sent0, _ = tk.counts()
        t0 = time.time()
        health = wrk(tk.port, "/health", args.wrk_seconds, 32)
        metrics = wrk(tk.port, "/metrics", args.wrk_seconds, 4)
        sent1, _ = tk.counts()
        elapsed = time.time() - t0
        t = time.time()
        http_get(tk.port, "/metrics")
        render = time.time() - t
        return {"health": health, "metrics": metrics, "slip_pct": max(0.0, 100 * (1 - (sent1 - sent0) / (n * elapsed))),
                "metrics_render_s": render, "n": n}
    finally:
        tk.stop()


def fmt(v, digits=2):
    return "n/a" if v != v else f"{v:.{digits}f}"


def ratio(a, b):
    return "n/a" if not b or b != b or a != a else f"{a / b:.2f}"


def report(args, sizes, rtt, load):
    lines = []
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except Exception:
        pass
    lines.append(f"Machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
                 f"Linux {platform.release()}. Run: `{' '.join(['python3', 'bench/run.py'] + sys.argv[1:])}` "
                 f"({args.duration:.0f} s measured per tool and size after {args.warmup:.0f} s of warm-up; tools run one after the other, "
                 f"both with raw ICMP sockets, interval 1 s, on loopback targets).")
    lines.append("")
    lines.append("| targets | tool | probes sent / expected | schedule slip | false loss | CPU s per 1,000 probes | CPU (% of a core) | peak RSS |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for n, rows in sizes.items():
        for name, r in rows.items():
            if "failed" in r:
                lines.append(f"| {n:,} | {name} | failed: {r['failed']} | | | | | |")
                continue
            lines.append(f"| {n:,} | {name} | {r['sent']:.0f} / {r['expected']:.0f} | {fmt(r['slip_pct'])} % | {fmt(r['false_loss_pct'])} % | "
                         f"{fmt(r['cpu_per_1000'], 4)} | {fmt(r['cpu_pct'])} % | {fmt(r['rss'], 1)} MiB |")
    lines.append("")
    lines.append("False loss compares the replies and requests counted in one /metrics scrape; at 10,000 targets a scrape "
                 "takes long enough for the two counts to be read a moment apart, so a value just below zero is that skew.")
    lines.append("")
    lines.append("Ratios, tunnelkeeper / smokeping_prober (below 1 is better for tunnelkeeper):")
    lines.append("")
    lines.append("| targets | CPU per probe | peak RSS |")
    lines.append("|---|---|---|")
    for n, rows in sizes.items():
        tk, sp = rows["tunnelkeeper"], rows["smokeping_prober"]
        if "failed" in tk or "failed" in sp:
            lines.append(f"| {n:,} | n/a (a tool failed) | n/a |")
            continue
        lines.append(f"| {n:,} | {ratio(tk['cpu_per_1000'], sp['cpu_per_1000'])} | {ratio(tk['rss'], sp['rss'])} |")
    if rtt:
        lines.append("")
        lines.append(f"RTT fidelity on loopback (127.0.0.1): `ping` {rtt['ping_samples']} echoes at 0.2 s, tunnelkeeper its last {rtt['tk_samples']} probes at 1 s.")
        lines.append("")
        lines.append("| | median | p99 |")
        lines.append("|---|---|---|")
        lines.append(f"| ping | {fmt(rtt['ping_p50'] * 1e6, 1)} µs | {fmt(rtt['ping_p99'] * 1e6, 1)} µs |")
        lines.append(f"| tunnelkeeper | {fmt(rtt['tk_p50'] * 1e6, 1)} µs | {fmt(rtt['tk_p99'] * 1e6, 1)} µs |")
        lines.append(f"| difference | {fmt((rtt['tk_p50'] - rtt['ping_p50']) * 1e6, 1)} µs | {fmt((rtt['tk_p99'] - rtt['ping_p99']) * 1e6, 1)} µs |")
    if load:
        lines.append("")
        lines.append(f"HTTP under load with {load['n']:,} targets probed at 1 s (wrk, 2 threads, {args.wrk_seconds} s each):")
        lines.append("")
        lines.append("| route | connections | requests/s | p99 latency |")
        lines.append("|---|---|---|---|")
        lines.append(f"| /health | 32 | {fmt(load['health']['rps'], 0)} | {fmt(load['health']['p99'] * 1e3, 3)} ms |")
        lines.append(f"| /metrics | 4 | {fmt(load['metrics']['rps'], 1)} | {fmt(load['metrics']['p99'] * 1e3, 1)} ms |")
        lines.append("")
        lines.append(f"Probing while the endpoint was hammered: schedule slip {fmt(load['slip_pct'])} %. "
                     f"One /metrics render at {load['n']:,} targets: {fmt(load['metrics_render_s'] * 1e3, 1)} ms.")
    return "\n".join(lines) + "\n"


def write(out, body):
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n" + start + "\n" + end + "\n"
    if start not in text:
        text += "\n" + start + "\n" + end + "\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    with open(out, "w") as f:
        f.write(before + start + "\n" + body + end + after)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="seconds, small N: for CI, so the harness cannot rot")
    p.add_argument("--binary", help="tunnelkeeper binary (default: build the release one)")
    p.add_argument("--smokeping", default="prometheus-smokeping-prober")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install the peers")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--sizes", default="8,1000,10000")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--warmup", type=float, default=5)
    args = p.parse_args()
    args.rtt_count = 100
    args.wrk_seconds = 10
    if args.smoke:
        args.sizes, args.duration, args.warmup, args.rtt_count, args.wrk_seconds = "8", 3, 2, 10, 1
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (raw ICMP sockets for both tools): sudo python3 bench/run.py")
    if not args.no_install:
        subprocess.run(["apt-get", "install", "-y", "-qq", "prometheus-smokeping-prober", "wrk", "iputils-ping"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    for tool in (args.smokeping, "wrk", "ping"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install prometheus-smokeping-prober wrk iputils-ping")
    if not args.binary:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "tunnelkeeper"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        args.binary = os.path.join(target, "release", "tunnelkeeper")
    workdir = tempfile.mkdtemp(prefix="tk-bench-")
    sizes = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        print(f"measuring {n} targets", flush=True)
        sizes[n] = run_size(args, n, workdir)
    print("measuring RTT fidelity", flush=True)
    rtt = rtt_fidelity(args, workdir)
    print("measuring HTTP under load", flush=True)
    load = http_load(args, max(sizes), workdir)
    body = report(args, sizes, rtt, load)
    write(args.out, body)
    print(body)


if __name__ == "__main__":
    main()
