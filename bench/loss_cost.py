#!/usr/bin/env python3
"""What fast detection costs under loss (issue #17), run by hand as root.

Runs tunnelkeeper on N loopback targets (default 1,000 and 10,000) at 1 s inside a network
namespace of its own, whose nftables output chain counts every echo request and drops a
given share of them at random (`numgen random mod 100 < P drop`), so that no other process
on the machine loses a packet. For each size it measures three runs:

  - the defaults (adaptive timeout, fast confirm, down_after 5) at 0 % loss: the baseline;
  - the defaults at P % loss (default 2);
  - the previous defaults (fixed 1 s timeout, no bursts, down_after 3) at P % loss;

and reports, over the measured window: echo requests on the wire per target per second,
CPU seconds per 1,000 requests and per second, and false downs (targets logged down; every
target answers, so each one is false). Prints a Markdown table.

    sudo python3 bench/loss_cost.py --binary target/release/tunnelkeeper
    sudo python3 bench/loss_cost.py --binary ... --sizes 1000 --loss 5 --duration 120

Use the release build: a debug build's monitor takes minutes to get through the first
verdicts of 10,000 targets (each one recomputes the VPN verdict and publishes a snapshot),
and its pingers wait on the full channel meanwhile, so nothing it measures is steady state.
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")
NS = f"tkloss{os.getpid()}"
TABLE = "losscost"

DEFAULTS = ""
PREVIOUS = 'adaptive_timeout = false\nfast_confirm = false\ndown_after = 3\n'


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw).stdout


def targets(n):
    out = []
    a = 1
    while len(out) < n:
        for b in range(1, 255):
            out.append(f"127.1.{a}.{b}")
            if len(out) == n:
                break
        a += 1
    return out


def set_loss(percent):
    drop = f"  icmp type echo-request numgen random mod 100 < {percent} drop\n" if percent else ""
    script = (f"table inet {TABLE} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n"
              f"  icmp type echo-request counter\n{drop} }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", NS, "nft", "delete", "table", "inet", TABLE], capture_output=True)
    subprocess.run(["ip", "netns", "exec", NS, "nft", "-f", "-"], input=script, text=True, check=True)


def wire_requests():
    out = sh("ip", "netns", "exec", NS, "nft", "list", "table", "inet", TABLE)
    m = re.search(r"counter packets (\d+)", out)
    return int(m.group(1))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def more_files():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(binary, hosts, probe_extra, loss, warmup, duration, workdir):
    config = os.path.join(workdir, f"loss-{len(hosts)}.toml")
    with open(config, "w") as f:
        f.write(f'[probe]\ninterval = "1s"\ntimeout = "1s"\nsocket = "raw"\n{probe_extra}')
        for h in hosts:
            f.write(f'[[target]]\naddress = "{h}"\n')
    state = tempfile.mkdtemp(prefix="tk-loss-state-")
    log_path = os.path.join(workdir, "daemon.log")
    set_loss(loss)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", NS, binary, "run", "--config", config, "--listen", "127.0.0.1:0",
             "--state-dir", state],
            stdout=subprocess.DEVNULL, stderr=log, preexec_fn=more_files,
            env={**os.environ, "RUST_LOG": "info", "AWS_EC2_METADATA_DISABLED": "true"})
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise SystemExit(f"tunnelkeeper exited: {open(log_path).read()[-2000:]}")
        log_from = os.path.getsize(log_path)
        w0, t0, c0 = wire_requests(), time.time(), cpu_seconds(proc.pid)
        time.sleep(duration)
        w1, t1, c1 = wire_requests(), time.time(), cpu_seconds(proc.pid)
        with open(log_path) as f:
            f.seek(log_from)
            downs = sum(1 for line in f if 'state="down"' in line or "state=down" in line)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    seconds = t1 - t0
    sent = w1 - w0
    return {
        "per_target_per_s": sent / len(hosts) / seconds,
        "cpu_per_1000": 1000 * (c1 - c0) / sent if sent else float("nan"),
        "cpu_share": (c1 - c0) / seconds,
        "downs": downs,
        "seconds": seconds,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--loss", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--duration", type=float, default=60)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: a network namespace and nftables")
    binary = os.path.abspath(args.binary)
    sh("ip", "netns", "add", NS)
    rows = []
    try:
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        with tempfile.TemporaryDirectory(prefix="tk-loss-") as workdir:
            for n in [int(s) for s in args.sizes.split(",")]:
                hosts = targets(n)
                for label, extra, loss in [
                    ("defaults", DEFAULTS, 0),
                    ("defaults", DEFAULTS, args.loss),
                    ("previous defaults", PREVIOUS, args.loss),
                ]:
                    r = run(binary, hosts, extra, loss, args.warmup, args.duration, workdir)
                    rows.append((n, label, loss, r))
                    print(f"N={n} {label} {loss}% loss: {r}", flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)
    print()
    print("| targets | settings | loss | echo requests per target per s | CPU s per 1,000 requests | CPU (share of a core) | false downs | window |")
    print("|---|---|---|---|---|---|---|---|")
    for n, label, loss, r in rows:
        print(f"| {n:,} | {label} | {loss} % | {r['per_target_per_s']:.4f} | {r['cpu_per_1000']:.4f} | "
              f"{100 * r['cpu_share']:.1f} % | {r['downs']} | {r['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
