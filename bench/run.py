#!/usr/bin/env python3
"""tunnelkeeper benchmark harness.

Runs tunnelkeeper, prometheus-smokeping-prober and fping on the same loopback targets at
the same interval (1 s), one tool after the other, in both socket modes (unprivileged
DGRAM ICMP with every tool running as `nobody`, and raw ICMP as root), and measures for
each: CPU seconds per 1,000 probes, peak RSS, probes sent against expected (schedule
slip), replies lost on a loss-free path (false loss), and the ratio tunnelkeeper / peer.
Then the cost curve over the sizes (/metrics render time per series), the scheduling
delay of tunnelkeeper's sends at the largest size, RTT fidelity against ping (loopback
and a veth pair into a network namespace), and HTTP under load: h2load at a fixed
10,000 requests/s on /health, and wrk flat out on /health and /metrics, while probing
the largest size. Writes the tables into BENCHMARKS.md between the `bench:start` and
`bench:end` markers (the rest of the file is kept).

    sudo python3 bench/run.py                 # full run: installs peers, release build
    sudo python3 bench/run.py --smoke --binary target/debug/tunnelkeeper --no-install --out /tmp/b.md
    sudo python3 bench/run.py --baseline /path/to/an/earlier/tunnelkeeper   # adds before/after
    sudo python3 bench/run.py --noc-page [--baseline OLD] [--binary B]   # the NOC page's memory only
    sudo python3 bench/run.py --mtu --sizes 1000,10000   # only what path-MTU probing costs (bench/mtu_cost.py)
    sudo python3 bench/run.py --tcp --sizes 1000          # only what TCP targets cost (bench/tcp_cost.py)
    sudo python3 bench/run.py --history --sizes 1000,10000   # the history's disk cost (bench/history_cost.py)

`--noc-page` measures only the NOC page's cost: RSS at the embedded default and at the
largest size once the history's rings are written (after a minute and more), with the
baseline's RSS for the difference per target, and how long `/` and a target page take.
It writes between the `noc:start` and `noc:end` markers.

Every number comes from this run; nothing is typed by hand.
"""

import argparse
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
PACKAGES = ["prometheus-smokeping-prober", "fping", "wrk", "nghttp2-client", "iputils-ping", "iproute2", "util-linux",
            "nftables"]
TOOLS = ["fping", "wrk", "h2load", "ping", "ip", "setpriv", "nft"]


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


def http_get(port, path, timeout=30):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram(text, name):
    """Cumulative buckets of an unlabelled histogram: [(le, count)]."""
    out = []
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        out.append((float(m.group(1)), float(m.group(2))))
    return out


def quantile_bound(buckets, q):
    """The upper bound of the bucket holding quantile q of a cumulative histogram delta."""
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


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


def wait_http(port, path, limit=60, proc=None):
    start = time.time()
    while time.time() - start < limit:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"exited with status {proc.returncode} before serving {path}")
        try:
            return http_get(port, path)
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on 127.0.0.1:{port}{path} within {limit}s")


def as_user(mode):
    """The command prefix that runs a tool the way the socket mode asks: DGRAM as nobody
    (which cannot open raw sockets, so every tool really uses DGRAM), raw as root."""
    if mode == "raw":
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]


def more_files():
    # smokeping_prober opens a socket per target in DGRAM mode.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Tool:
    """A prober under test, started as a child process."""

    proc: subprocess.Popen

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def counts(self):
        """(requests sent, replies, the time these counts are for)."""
        raise NotImplementedError


class Tunnelkeeper(Tool):
    name = "tunnelkeeper"

    def __init__(self, binary, hosts, workdir, mode, interval="1s", timeout="1s"):
        self.port = free_port()
        config = os.path.join(workdir, f"tk-{len(hosts)}-{mode}.toml")
        with open(config, "w") as f:
            f.write(f'[probe]\ninterval = "{interval}"\ntimeout = "{timeout}"\nsocket = "{mode}"\n')
            for h in hosts:
                f.write(f'[[target]]\naddress = "{h}"\n')
        os.chmod(config, 0o644)
        state = tempfile.mkdtemp(prefix="tk-bench-state-")
        if mode != "raw":
            shutil.chown(state, "nobody", "nogroup")
        self.proc = subprocess.Popen(
            as_user(mode) + [binary, "run", "--config", config, "--listen", f"127.0.0.1:{self.port}", "--state-dir", state],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn", "AWS_EC2_METADATA_DISABLED": "true"},
            preexec_fn=more_files)
        try:
            wait_http(self.port, "/-/ready", proc=self.proc)
        except SystemExit:
            self.stop()
            raise

    def counts(self):
        m = http_get(self.port, "/metrics")
        return metric_sum(m, "tunnelkeeper_probe_sent_total"), metric_sum(m, "tunnelkeeper_probe_replies_total"), time.time()

    def render(self):
        """Seconds for one /metrics request, and how many series it had."""
        t = time.time()
        text = http_get(self.port, "/metrics")
        took = time.time() - t
        return took, sum(1 for l in text.splitlines() if l and not l.startswith("#"))

    def send_delays(self):
        return histogram(http_get(self.port, "/metrics"), "tunnelkeeper_probe_send_delay_seconds")


class Smokeping(Tool):
    name = "smokeping_prober"

    def __init__(self, binary, hosts, workdir, mode):
        self.port = free_port()
        config = os.path.join(workdir, f"sp-{len(hosts)}.yml")
        with open(config, "w") as f:
            f.write("targets:\n- hosts:\n")
            for h in hosts:
                f.write(f"  - {h}\n")
            f.write("  interval: 1s\n  network: ip4\n  protocol: icmp\n  size: 56\n")
        os.chmod(config, 0o644)
        privileged = ["--privileged"] if mode == "raw" else []
        self.proc = subprocess.Popen(
            as_user(mode) + [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
                             "--log.level=warn"] + privileged,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=more_files)
        try:
            wait_http(self.port, "/metrics", proc=self.proc)
        except SystemExit:
            # Still probing, or not: the wire counter and /proc tell.
            if self.proc.poll() is not None:
                raise

    def counts(self):
        m = http_get(self.port, "/metrics", timeout=10)
        return metric_sum(m, "smokeping_requests_total"), metric_sum(m, "smokeping_response_duration_seconds_count"), time.time()


class Fping(Tool):
    """fping in loop mode; its counts come from the interval summaries it prints (-Q)."""

    name = "fping"
    REPORT = 5

    def __init__(self, binary, hosts, workdir, mode):
        path = os.path.join(workdir, f"fping-{len(hosts)}.txt")
        with open(path, "w") as f:
            f.write("\n".join(hosts) + "\n")
        os.chmod(path, 0o644)
        # -i: the gap between any two sends, so that every target gets its 1 s period.
        gap_ms = max(0.01, min(10.0, 1000.0 / len(hosts) / 2))
        self.sent = self.replies = 0.0
        self.at = None
        self.said = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            as_user(mode) + [binary, "-l", "-q", "-p", "1000", "-t", "1000", "-i", f"{gap_ms:g}",
                             "-Q", str(self.REPORT), "-f", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=more_files)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 30
        while self.at is None:
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise SystemExit(f"fping printed no summary ({' '.join(getattr(self, 'said', []))})")
            time.sleep(0.2)

    def _read(self):
        sent = replies = 0
        for line in self.proc.stderr:
            m = re.search(r"xmt/rcv/%loss = (\d+)/(\d+)/", line)
            if m:
                sent += int(m.group(1))
                replies += int(m.group(2))
            elif not line.startswith("["):
                self.said = (self.said + [line.strip()])[-3:]
            else:
                with self.lock:
                    self.sent, self.replies, self.at = self.sent + sent, self.replies + replies, time.time()
                sent = replies = 0

    def counts(self):
        # The counts up to the last complete summary; wait for a fresh one.
        with self.lock:
            seen = self.at
        deadline = time.time() + 3 * self.REPORT
        while time.time() < deadline:
            with self.lock:
                if self.at != seen:
                    return self.sent, self.replies, self.at
            if self.proc.poll() is not None:
                raise RuntimeError(f"fping exited with status {self.proc.returncode}: {' '.join(self.said)}")
            time.sleep(0.05)
        raise RuntimeError("fping printed no summary for three periods")


class WireCounter:
    """Counts the echo requests leaving this host (an nftables counter on the output hook):
    the probes a tool really sent, whatever it reports, and for a tool that cannot report.
    Tools run one at a time, so the count over a window is that tool's."""

    TABLE = f"tkbench{os.getpid()}"

    def __init__(self):
        script = (f"table inet {self.TABLE} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n"
                  f"  icmp type echo-request counter\n }}\n}}\n")
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)

    def read(self):
        out = subprocess.run(["nft", "-j", "list", "table", "inet", self.TABLE], capture_output=True, text=True,
                             check=True).stdout
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return expr["counter"]["packets"]
        raise SystemExit("the nftables counter is missing")

    def close(self):
        subprocess.run(["nft", "delete", "table", "inet", self.TABLE], check=False)


def own_counts(tool):
    try:
        return tool.counts()
    except Exception:
        return None


def measure(tool, wire, warmup, duration):
    """Probes sent from the wire counter; false loss from the tool's own counts (requests
    answered / requests), when it can report them."""
    time.sleep(warmup)
    own0 = own_counts(tool)
    w0, t0, cpu0 = wire.read(), time.time(), cpu_seconds(tool.proc.pid)
    time.sleep(duration)
    # The wire window is exactly the duration (a whole number of periods, so the phase of
    # the sends does not matter); the tool's own counts may take a moment more.
    w1, t1, cpu1 = wire.read(), time.time(), cpu_seconds(tool.proc.pid)
    own1 = own_counts(tool)
    r = {
        "sent": w1 - w0,
        "seconds": t1 - t0,
        "cpu": cpu1 - cpu0,
        "rss": peak_rss_mib(tool.proc.pid),
        "false_loss_pct": float("nan"),
    }
    if own0 and own1 and own1[0] > own0[0]:
        r["false_loss_pct"] = 100.0 * (1 - (own1[1] - own0[1]) / (own1[0] - own0[0]))
    return r


def run_size(args, n, mode, workdir):
    hosts = targets(n)
    rows = {}
    peers = [(Tunnelkeeper, args.binary), (Smokeping, args.smokeping), (Fping, "fping")]
    for cls, binary in peers:
        try:
            tool = cls(binary, hosts, workdir, mode)
        except SystemExit as e:
            # A tool that cannot even start at this size is a result too.
            rows[cls.name] = {"failed": str(e)}
            print(f"  N={n} {mode} {cls.name}: FAILED: {e}", flush=True)
            continue
        try:
            if tool.proc.poll() is not None:
                raise RuntimeError(f"exited with status {tool.proc.returncode}")
            r = measure(tool, args.wire, args.warmup, args.duration)
            if tool.proc.poll() is not None:
                raise RuntimeError(f"exited with status {tool.proc.returncode} while measured")
            if cls is Tunnelkeeper:
                r["render_s"], r["series"] = tool.render()
                if n == max(args.size_list):
                    r["delays"] = tool.send_delays()
        except Exception as e:
            if tool.proc.poll() is not None:
                said = " ".join(getattr(tool, "said", [])) or f"status {tool.proc.returncode}"
                e = f"exited while measured: {said}"
            rows[cls.name] = {"failed": f"{e}"}
            print(f"  N={n} {mode} {cls.name}: FAILED: {e}", flush=True)
            continue
        finally:
            tool.stop()
        expected = n * r["seconds"]
        r["expected"] = expected
        r["slip_pct"] = max(0.0, 100.0 * (1 - r["sent"] / expected)) if expected else 0.0
        r["cpu_per_1000"] = 1000.0 * r["cpu"] / r["sent"] if r["sent"] else float("nan")
        r["cpu_pct"] = 100.0 * r["cpu"] / r["seconds"]
        rows[cls.name] = r
        print(f"  N={n} {mode} {cls.name}: " + json.dumps({k: round(v, 4) for k, v in r.items() if isinstance(v, (int, float))}),
              flush=True)
    return rows


class Netns:
    """A veth pair into a network namespace this run creates: a real (if short) path."""

    def __init__(self):
        self.name = f"tkbench{os.getpid()}"
        self.host, self.peer = "10.203.0.1", "10.203.0.2"
        self.veth = f"tkb{os.getpid() % 100000}"
        cmds = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name],
            ["ip", "addr", "add", f"{self.host}/30", "dev", self.veth],
            ["ip", "link", "set", self.veth, "up"],
            ["ip", "-n", self.name, "addr", "add", f"{self.peer}/30", "dev", "eth0"],
            ["ip", "-n", self.name, "link", "set", "eth0", "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
        ]
        for c in cmds:
            subprocess.run(c, check=True)

    def close(self):
        subprocess.run(["ip", "link", "del", self.veth], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def rtt_fidelity(args, workdir, address, label, binary=None):
    """ping and tunnelkeeper on the same target at the same time, both every 0.2 s, raw."""
    tk = Tunnelkeeper(binary or args.binary, [address], workdir, "raw", interval="200ms", timeout="200ms")
    try:
        per = subprocess.run(["ping", "-n", "-c", str(args.rtt_count), "-i", "0.2", address],
                             capture_output=True, text=True)
        times = [float(x) / 1000 for x in re.findall(r"time=([\d.]+) ms", per.stdout)]
        status = json.loads(http_get(tk.port, "/status"))
        t = status["shared_targets"][0]
        return {
            "label": label,
            "ping_p50": statistics.median(times) if times else float("nan"),
            "ping_p99": sorted(times)[int(0.99 * (len(times) - 1))] if times else float("nan"),
            "tk_p50": t["rtt_p50_seconds"] if t["rtt_p50_seconds"] is not None else float("nan"),
            "tk_p99": t["rtt_p99_seconds"] if t["rtt_p99_seconds"] is not None else float("nan"),
            "tk_samples": t["recent_probes"],
            "ping_samples": len(times),
        }
    finally:
        tk.stop()


def h2load(port, path, seconds, rate, clients, workdir):
    """A fixed request rate (open loop): latency as a client at that rate sees it."""
    log = os.path.join(workdir, "h2load.log")
    if os.path.exists(log):
        os.remove(log)
    out = subprocess.run(["h2load", "--h1", "-c", str(clients), "--rps", str(rate // clients), "-D", str(seconds),
                          "--warm-up-time", "1", "--log-file", log, f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True)
    lat = []
    ok = 0
    with open(log) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1e6)
                ok += parts[1] == "200"
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    return {"rate": rate, "rps": len(lat) / seconds, "ok": ok, "n": len(lat), "p50": q(0.5), "p99": q(0.99),
            "max": lat[-1] if lat else float("nan"), "said": out.stdout[-400:]}


def wrk(port, path, seconds, connections):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p99": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "connections": connections,
    }


def http_load(args, n, workdir, binary=None):
    tk = Tunnelkeeper(binary or args.binary, targets(n), workdir, "raw")
    try:
        time.sleep(args.warmup)
        rss = peak_rss_mib(tk.proc.pid)
        render, series = tk.render()
        sent0, _, t0 = tk.counts()
        fixed = h2load(tk.port, "/health", args.http_seconds, args.http_rate, 10, workdir)
        health = wrk(tk.port, "/health", args.http_seconds, 8)
        metrics = wrk(tk.port, "/metrics", args.http_seconds, 2)
        sent1, _, t1 = tk.counts()
        return {"fixed": fixed, "health": health, "metrics": metrics, "n": n, "rss": rss, "render_s": render,
                "series": series,
                "slip_pct": max(0.0, 100 * (1 - (sent1 - sent0) / (n * (t1 - t0))))}
    finally:
        tk.stop()


def baseline(args, workdir):
    """The same RTT and load measurements for an earlier build, in this run."""
    print(f"measuring the baseline {args.baseline}", flush=True)
    return {"rtt": rtt_fidelity(args, workdir, "127.0.0.1", "loopback", binary=args.baseline),
            "load": http_load(args, max(args.size_list), workdir, binary=args.baseline)}


def before_after(args, rtt, load, base):
    b, a = base["load"], load
    rows = [
        ("RTT median minus ping's, loopback", f"{fmt((base['rtt']['tk_p50'] - base['rtt']['ping_p50']) * 1e6, 1)} µs",
         f"{fmt((rtt['tk_p50'] - rtt['ping_p50']) * 1e6, 1)} µs", "within 20 µs"),
        (f"/health p99 at a fixed {b['fixed']['rate']:,} req/s", f"{fmt(b['fixed']['p99'] * 1e3, 3)} ms (served {fmt(b['fixed']['rps'], 0)}/s)",
         f"{fmt(a['fixed']['p99'] * 1e3, 3)} ms (served {fmt(a['fixed']['rps'], 0)}/s)", "under 2 ms"),
        ("/health flat out (wrk)", f"{fmt(b['health']['rps'], 0)} req/s", f"{fmt(a['health']['rps'], 0)} req/s", ""),
        ("one /metrics render", f"{fmt(b['render_s'] * 1e3, 1)} ms", f"{fmt(a['render_s'] * 1e3, 1)} ms", ""),
        ("/metrics flat out (wrk)", f"{fmt(b['metrics']['rps'], 1)} req/s", f"{fmt(a['metrics']['rps'], 1)} req/s", ""),
        ("RSS after warm-up (before the load)", f"{fmt(b['rss'], 1)} MiB", f"{fmt(a['rss'], 1)} MiB", ""),
        ("schedule slip under HTTP load", f"{fmt(b['slip_pct'])} %", f"{fmt(a['slip_pct'])} %", "under 1 %"),
    ]
    lines = ["", f"Before and after, measured in this run: the baseline build `{args.baseline}` against this one, "
             f"{a['n']:,} targets (raw) for the HTTP and memory rows.", "",
             "| | before | after | target |", "|---|---|---|---|"]
    lines += [f"| {what} | {x} | {y} | {t} |" for what, x, y, t in rows]
    return lines


def fmt(v, digits=2):
    return "n/a" if v != v else f"{v:,.{digits}f}"


def ratio(a, b):
    return "n/a" if not b or b != b or a != a else f"{a / b:.2f}"


def report(args, results, rtts, load, base=None):
    lines = []
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except Exception:
        pass
    versions = []
    for cmd in (["fping", "--version"], [args.smokeping, "--version"]):
        try:
            said = subprocess.run(cmd, capture_output=True, text=True)
            versions.append((said.stdout + said.stderr).strip().splitlines()[0])
        except Exception:
            pass
    lines.append(f"Machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
                 f"Linux {platform.release()}. Peers: {'; '.join(versions)}. Run: `{' '.join(['python3', 'bench/run.py'] + sys.argv[1:])}` "
                 f"({args.duration:.0f} s measured per tool, size and socket mode after {args.warmup:.0f} s of warm-up; tools run one "
                 f"after the other, interval 1 s, timeout 1 s, on loopback targets).")
    lines.append("")
    lines.append("Socket modes: **dgram** runs every tool as `nobody` with unprivileged ICMP sockets "
                 "(`net.ipv4.ping_group_range` opened for the run; smokeping_prober then opens one socket per target); "
                 "**raw** runs every tool as root with raw ICMP sockets (each raw socket sees every ICMP packet of the host).")
    for mode, sizes in results.items():
        lines.append("")
        lines.append(f"### {mode}")
        lines.append("")
        lines.append("| targets | tool | probes on the wire / expected | schedule slip | false loss | CPU s per 1,000 probes | CPU (% of a core) | peak RSS |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for n, rows in sizes.items():
            for name, r in rows.items():
                if "failed" in r:
                    lines.append(f"| {n:,} | {name} | failed: {r['failed']} | | | | | |")
                    continue
                loss = "n/a (its /metrics did not answer)" if r["false_loss_pct"] != r["false_loss_pct"] else f"{fmt(r['false_loss_pct'])} %"
                lines.append(f"| {n:,} | {name} | {r['sent']:,.0f} / {r['expected']:,.0f} | {fmt(r['slip_pct'])} % | {loss} | "
                             f"{fmt(r['cpu_per_1000'], 4)} | {fmt(r['cpu_pct'])} % | {fmt(r['rss'], 1)} MiB |")
        lines.append("")
        lines.append(f"Ratios in {mode} mode, tunnelkeeper / peer (below 1 is better for tunnelkeeper):")
        lines.append("")
        lines.append("| targets | CPU per probe vs smokeping_prober | peak RSS vs smokeping_prober | CPU per probe vs fping | peak RSS vs fping |")
        lines.append("|---|---|---|---|---|")
        for n, rows in sizes.items():
            tk = rows["tunnelkeeper"]
            cells = []
            for peer in ("smokeping_prober", "fping"):
                p = rows[peer]
                if "failed" in tk or "failed" in p:
                    cells += ["n/a (a tool failed)", "n/a"]
                else:
                    cells += [ratio(tk["cpu_per_1000"], p["cpu_per_1000"]), ratio(tk["rss"], p["rss"])]
            lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Probes on the wire are counted by an nftables counter on the output hook over the measured window (one tool "
                 "runs at a time); schedule slip is the shortfall against targets × seconds; CPU per probe divides the tool's "
                 "CPU time (from /proc) by the probes on the wire. False loss is 1 − answers / requests as the tool itself "
                 "counted them over the window, on a path that loses nothing.")

    # Cost as work grows, for tunnelkeeper (raw mode if measured, else the first).
    mode = "raw" if "raw" in results else next(iter(results))
    sizes = results[mode]
    tk_rows = [(n, rows["tunnelkeeper"]) for n, rows in sizes.items() if "failed" not in rows["tunnelkeeper"]]
    if tk_rows:
        lines.append("")
        lines.append(f"Cost as work grows, tunnelkeeper ({mode}):")
        lines.append("")
        lines.append("| targets | CPU (% of a core) | peak RSS | RSS per target above 8 | /metrics series | one /metrics render | per series |")
        lines.append("|---|---|---|---|---|---|---|")
        base_rss = tk_rows[0][1]["rss"]
        for n, r in tk_rows:
            per = f"{fmt((r['rss'] - base_rss) * 1024 / (n - tk_rows[0][0]), 1)} KiB" if n > tk_rows[0][0] else "—"
            lines.append(f"| {n:,} | {fmt(r['cpu_pct'])} % | {fmt(r['rss'], 1)} MiB | {per} | {r['series']:,} | "
                         f"{fmt(r['render_s'] * 1e3, 1)} ms | {fmt(r['render_s'] / r['series'] * 1e9, 0)} ns |")
        big = tk_rows[-1][1]
        if "delays" in big and big["delays"]:
            d = big["delays"]
            lines.append("")
            lines.append(f"Scheduling of tunnelkeeper's sends at {tk_rows[-1][0]:,} targets "
                         f"(`tunnelkeeper_probe_send_delay_seconds`: from a request's scheduled instant to its send, "
                         f"{d[-1][1]:,.0f} sends since start): p50 at most {fmt(quantile_bound(d, 0.5) * 1e3, 1)} ms, "
                         f"p99 at most {fmt(quantile_bound(d, 0.99) * 1e3, 1)} ms, p99.9 at most {fmt(quantile_bound(d, 0.999) * 1e3, 1)} ms "
                         f"(bucket bounds; tokio's timer has a 1 ms resolution).")
    if rtts:
        lines.append("")
        lines.append(f"RTT fidelity: `ping` and tunnelkeeper on the same target at the same time, both every 0.2 s, "
                     f"raw sockets ({rtts[0]['ping_samples']} echoes from ping; tunnelkeeper's median and p99 over its last "
                     f"{rtts[0]['tk_samples']} probes).")
        lines.append("")
        lines.append("| path | ping median | tunnelkeeper median | difference | ping p99 | tunnelkeeper p99 |")
        lines.append("|---|---|---|---|---|---|")
        for r in rtts:
            lines.append(f"| {r['label']} | {fmt(r['ping_p50'] * 1e6, 1)} µs | {fmt(r['tk_p50'] * 1e6, 1)} µs | "
                         f"{fmt((r['tk_p50'] - r['ping_p50']) * 1e6, 1)} µs | {fmt(r['ping_p99'] * 1e6, 1)} µs | {fmt(r['tk_p99'] * 1e6, 1)} µs |")
    if load:
        f = load["fixed"]
        lines.append("")
        lines.append(f"HTTP under load with {load['n']:,} targets probed at 1 s (raw), {args.http_seconds} s per run, "
                     f"the load tool on the same 2 cores:")
        lines.append("")
        lines.append("| route | load | requests/s served | p50 | p99 | max |")
        lines.append("|---|---|---|---|---|---|")
        lines.append(f"| /health | h2load, fixed {f['rate']:,}/s over 10 connections | {fmt(f['rps'], 0)} ({f['ok']:,} of {f['n']:,} were 200) | "
                     f"{fmt(f['p50'] * 1e3, 3)} ms | {fmt(f['p99'] * 1e3, 3)} ms | {fmt(f['max'] * 1e3, 1)} ms |")
        for route, w in (("/health", load["health"]), ("/metrics", load["metrics"])):
            lines.append(f"| {route} | wrk flat out, {w['connections']} connections | {fmt(w['rps'], 1)} | | {fmt(w['p99'] * 1e3, 3)} ms | |")
        lines.append("")
        lines.append(f"Probing while the endpoint was hammered: schedule slip {fmt(load['slip_pct'])} %.")
    if base:
        lines += before_after(args, rtts[0], load, base)
    return "\n".join(lines) + "\n"


def write_section(out, marker, body):
    """Replaces what stands between the `MARKER:start` and `MARKER:end` comments of `out`
    with `body` (the markers are added at the end the first time); the rest is kept."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = open(out).read() if os.path.exists(out) else "# Benchmarks\n"
    if start not in text:
        text = text.rstrip("\n") + "\n\n" + start + "\n" + end + "\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    with open(out, "w") as f:
        f.write(before + start + "\n" + body + end + after)


def write(out, body):
    write_section(out, "bench", body)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed_get(port, path, times=5):
    took = []
    for _ in range(times):
        t = time.time()
        body = http_get(port, path)
        took.append(time.time() - t)
    return statistics.median(took), len(body)


class Embedded(Tunnelkeeper):
    """tunnelkeeper with no config file: the embedded default (127.0.0.1 and .2)."""

    def __init__(self, binary):
        self.port = free_port()
        state = tempfile.mkdtemp(prefix="tk-bench-state-")
        self.proc = subprocess.Popen(
            [binary, "run", "--listen", f"127.0.0.1:{self.port}", "--state-dir", state],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn", "AWS_EC2_METADATA_DISABLED": "true"})
        wait_http(self.port, "/-/ready", proc=self.proc)


def noc_page(args, workdir):
    """RSS with the history's rings written (the first minutes closed), per binary and size."""
    n = max(args.size_list)
    binaries = [("this build", args.binary)] + ([("baseline", args.baseline)] if args.baseline else [])
    rows = []
    for label, binary in binaries:
        for size in ["embedded", n]:
            tool = Embedded(binary) if size == "embedded" else Tunnelkeeper(binary, targets(n), workdir, "raw")
            try:
                print(f"  {label}, {size}: waiting {args.noc_seconds:.0f} s", flush=True)
                time.sleep(args.noc_seconds)
                row = {"label": label, "size": size, "rss": rss_mib(tool.proc.pid), "hwm": peak_rss_mib(tool.proc.pid)}
                if label == "this build":
                    row["index_s"], row["index_bytes"] = timed_get(tool.port, "/")
                    address = "127.0.0.1" if size == "embedded" else targets(1)[0]
                    row["target_s"], row["target_bytes"] = timed_get(tool.port, f"/target/{address}?range=6h")
                    row["rss_after"] = rss_mib(tool.proc.pid)
                rows.append(row)
                print("   " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
            finally:
                tool.stop()
    lines = ["## The NOC page's cost", "",
             f"`bench/run.py --noc-page`: {platform.node()}, {os.cpu_count()} cores, binary `{args.binary}`"
             + (f", baseline `{args.baseline}`" if args.baseline else "") + f", {args.noc_seconds:.0f} s after start "
             "(so that minutes have closed into the rings), raw ICMP, 1 s interval.", "",
             "| binary | targets | RSS | peak RSS | `GET /` | its size | `GET /target/ADDR?range=6h` | RSS after the pages |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = "embedded default (2)" if r["size"] == "embedded" else f"{r['size']:,}"
        page = (f"{fmt(r['index_s'] * 1000, 1)} ms | {r['index_bytes'] / 1024:.0f} KiB | {fmt(r['target_s'] * 1000, 1)} ms | "
                f"{fmt(r['rss_after'], 1)} MiB") if "index_s" in r else "— | — | — | —"
        lines.append(f"| {r['label']} | {size} | {fmt(r['rss'], 1)} MiB | {fmt(r['hwm'], 1)} MiB | {page} |")
    mine = {r["size"]: r for r in rows if r["label"] == "this build"}
    base = {r["size"]: r for r in rows if r["label"] == "baseline"}
    embedded = max(mine["embedded"]["rss"], mine["embedded"]["rss_after"])
    lines += ["", f"At the embedded default the daemon holds {fmt(embedded, 1)} MiB with the page served "
              f"({'within' if embedded < 16 else 'OVER'} the 16 MiB budget)."]
    if base:
        per = (mine[n]["rss"] - base[n]["rss"]) * 1024 * 1024 / n
        lines += [f"At {n:,} targets this build holds {fmt(mine[n]['rss'] - base[n]['rss'], 1)} MiB more than the "
                  f"baseline: {per:,.0f} bytes per target (a series is 1,896 bytes, 60 one-minute and 72 "
                  "five-minute slots of 14 bytes, plus 2 bytes per reply of the minute being filled; each "
                  "target has one and each tunnel one more)."]
    return "\n".join(lines) + "\n"


def write_noc(out, body):
    write_section(out, "noc", body)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="seconds, small N: for CI, so the harness cannot rot")
    p.add_argument("--binary", help="tunnelkeeper binary (default: build the release one)")
    p.add_argument("--smokeping", default="prometheus-smokeping-prober")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install the peers")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--sizes", default="8,1000,10000")
    p.add_argument("--modes", default="dgram,raw")
    p.add_argument("--baseline", help="an earlier tunnelkeeper build to measure RTT and HTTP load against, in the same run")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--noc-page", action="store_true", help="measure only the NOC page's memory and render time")
    p.add_argument("--noc-seconds", type=float, default=130, help="how long the daemon runs before --noc-page reads its RSS")
    p.add_argument("--mtu", action="store_true",
                   help="measure only what path-MTU probing costs (bench/mtu_cost.py), into its own section")
    p.add_argument("--tcp", action="store_true",
                   help="measure only what TCP targets cost (bench/tcp_cost.py), into its own section")
    p.add_argument("--history", action="store_true",
                   help="measure only what the history on disk costs (bench/history_cost.py), into its own section")
    args = p.parse_args()
    args.rtt_count, args.http_seconds, args.http_rate = 150, 10, 10000
    if args.smoke:
        args.sizes, args.duration, args.warmup, args.rtt_count, args.http_seconds, args.http_rate = "8", 3, 2, 10, 2, 1000
    args.size_list = [int(x) for x in args.sizes.split(",")]
    # A stopped run still restores the sysctl and removes its nftables table and namespace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (raw ICMP sockets, a network namespace): sudo python3 bench/run.py")
    if not args.no_install and not args.noc_page:
        subprocess.run(["apt-get", "install", "-y", "-qq"] + PACKAGES, check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    for tool in [] if args.noc_page else [args.smokeping] + TOOLS:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install {' '.join(PACKAGES)}")
    pwd.getpwnam("nobody")
    if not args.binary:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "tunnelkeeper"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        args.binary = os.path.join(target, "release", "tunnelkeeper")
    workdir = tempfile.mkdtemp(prefix="tk-bench-")
    os.chmod(workdir, 0o755)
    if args.noc_page:
        body = noc_page(args, workdir)
        write_noc(args.out, body)
        print(body)
        return
    range_file = "/proc/sys/net/ipv4/ping_group_range"
    saved_range = open(range_file).read().strip()
    results = {}
    netns = None
    args.wire = WireCounter()
    try:
        with open(range_file, "w") as f:
            f.write("0 2147483647")
        if args.tcp:
            import tcp_cost
            body = tcp_cost.report(args, tcp_cost.measure(args, workdir))
            tcp_cost.write(args.out, body)
            print(body)
            return
        if args.history:
            import history_cost
            body = history_cost.report(args, history_cost.measure(args, workdir))
            history_cost.write(args.out, body)
            print(body)
            return
        if args.mtu:
            import mtu_cost
            body = mtu_cost.report(args, mtu_cost.measure(args, workdir))
            mtu_cost.write(args.out, body)
            print(body)
            return
        for mode in args.modes.split(","):
            results[mode] = {}
            for n in args.size_list:
                print(f"measuring {n} targets, {mode}", flush=True)
                results[mode][n] = run_size(args, n, mode, workdir)
        print("measuring RTT fidelity", flush=True)
        rtts = [rtt_fidelity(args, workdir, "127.0.0.1", "loopback (127.0.0.1)")]
        netns = Netns()
        rtts.append(rtt_fidelity(args, workdir, netns.peer, f"veth into a namespace ({netns.peer})"))
        print("measuring HTTP under load", flush=True)
        load = http_load(args, max(args.size_list), workdir)
        base = baseline(args, workdir) if args.baseline else None
    finally:
        with open(range_file, "w") as f:
            f.write(saved_range.replace("\t", " "))
        if netns:
            netns.close()
        args.wire.close()
    body = report(args, results, rtts, load, base)
    write(args.out, body)
    print(body)


if __name__ == "__main__":
    main()
