"""What TCP targets cost, run by `bench/run.py --tcp`.

N loopback TCP targets (127.1.x.y:PORT, distinct addresses) pinned in a VGW's four
tunnels, at the TCP default interval of 5 s (a connect per target every 5 s, N/5 per
second), against one listener process that accepts and closes (a Python selectors loop
on 0.0.0.0:PORT: every 127/8 address reaches it). Three runs per size: TCP targets with
the listener (every connect completes: handshake, MSS read, close), TCP targets with no
listener (every connect is reset: refused), and the same targets by ICMP at 5 s for
reference. The daemon runs unprivileged as `nobody` (DGRAM ICMP). Measured: the daemon's
CPU and peak RSS, its open descriptors (sampled every 100 ms: the peak and the mean),
sockets in TIME_WAIT towards the port (the daemon closes first, so each connect leaves
one for 60 s), probes sent against expected (schedule slip), and what /status says.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import run as h

INTERVAL = "5s"
PORT = 15432

LISTENER = r"""
import selectors, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
s.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for _ in sel.select():
        while True:
            try:
                c, _ = s.accept()
            except BlockingIOError:
                break
            c.close()
"""


def config(hosts, tcp):
    lines = ['[probe]\ninterval = "5s"\ntimeout = "1s"\nsocket = "dgram"\n',
             f'tcp_interval = "{INTERVAL}"\n', "[mtu]\nenabled = false\n"]
    groups = [hosts[i::4] for i in range(4)]
    for c in range(0, 4, 2):
        lines.append(f'[[vpn]]\nname = "c{c}"\n')
        for t, group in enumerate(groups[c:c + 2]):
            suffix = f":{PORT}" if tcp else ""
            targets = ", ".join(f'"{host}{suffix}"' for host in group)
            lines.append(f'  [[vpn.tunnel]]\n  name = "c{c}-t{t}"\n  targets = [{targets}]\n')
    return "".join(lines)


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def time_wait():
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", f"( dport = :{PORT} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def run_one(args, hosts, workdir, variant):
    port = h.free_port()
    tcp = variant != "ICMP"
    path = os.path.join(workdir, f"tcp-{len(hosts)}-{variant}.toml".replace(" ", "-"))
    with open(path, "w") as f:
        f.write(config(hosts, tcp))
    os.chmod(path, 0o644)
    state = tempfile.mkdtemp(prefix="tk-bench-tcp-")
    shutil.chown(state, "nobody", "nogroup")
    listener = None
    if variant == "TCP open":
        listener = subprocess.Popen([sys.executable, "-c", LISTENER, str(PORT)], stdout=subprocess.PIPE, text=True,
                                    preexec_fn=h.more_files)
        assert listener.stdout.readline().strip() == "ready"
    proc = subprocess.Popen(
        h.as_user("dgram") + [args.binary, "run", "--config", path, "--listen", f"127.0.0.1:{port}", "--state-dir", state],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn", "AWS_EC2_METADATA_DISABLED": "true"}, preexec_fn=h.more_files)
    try:
        h.wait_http(port, "/-/ready", limit=120, proc=proc)
        time.sleep(args.warmup)
        m0 = h.http_get(port, "/metrics")
        t0, cpu0 = time.time(), h.cpu_seconds(proc.pid)
        lcpu0 = h.cpu_seconds(listener.pid) if listener else 0.0
        samples = []
        while time.time() - t0 < args.duration:
            samples.append(fds(proc.pid))
            time.sleep(0.1)
        t1, cpu1 = time.time(), h.cpu_seconds(proc.pid)
        lcpu1 = h.cpu_seconds(listener.pid) if listener else 0.0
        m1 = h.http_get(port, "/metrics")
        status = json.loads(h.http_get(port, "/status"))
        tw = time_wait()
        if proc.poll() is not None:
            raise SystemExit(f"tunnelkeeper exited with status {proc.returncode} while measured")
        seconds = t1 - t0
        sent = h.metric_sum(m1, "tunnelkeeper_probe_sent_total") - h.metric_sum(m0, "tunnelkeeper_probe_sent_total")
        targets = [x for c in status["connections"] for t in c["tunnels"] for x in t["targets"]]
        services = [((x.get("service") or {}).get("state")) for x in targets]
        r = {
            "variant": variant,
            "n": len(hosts),
            "cpu_pct": 100.0 * (cpu1 - cpu0) / seconds,
            "listener_cpu_pct": 100.0 * (lcpu1 - lcpu0) / seconds,
            "rss": h.peak_rss_mib(proc.pid),
            "fd_peak": max(samples),
            "fd_mean": sum(samples) / len(samples),
            "time_wait": tw,
            "probes_per_s": sent / seconds,
            "slip_pct": max(0.0, 100.0 * (1 - sent / (len(hosts) * seconds / 5.0))),
            "up": sum(1 for x in targets if x["state"] == "up"),
            "open": services.count("open"),
            "refused": services.count("refused"),
            "service_down": sum(1 for a in status["alerts"] if a["alert"] == "ServiceDown"),
        }
        print(f"  TCP N={len(hosts)} {variant}: {r}", flush=True)
        return r
    finally:
        for p in [proc, listener]:
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def measure(args, workdir):
    rows = []
    for n in args.size_list:
        hosts = h.targets(n)
        for variant in ["TCP open", "TCP refused", "ICMP"]:
            print(f"measuring TCP targets: {n}, {variant}", flush=True)
            rows.append(run_one(args, hosts, workdir, variant))
    return rows


def report(args, rows):
    f = h.fmt
    lines = [
        f"TCP targets: N loopback targets in a VGW's 4 tunnels at {INTERVAL} (the TCP default), one listener process "
        f"that accepts and closes (\"TCP open\"), none (\"TCP refused\": every connect reset), and the same targets by "
        f"ICMP at {INTERVAL} for reference; DGRAM as nobody, {args.duration:.0f} s measured after {args.warmup:.0f} s. "
        f"CPU % is of one core; descriptors sampled every 100 ms; TIME_WAIT counted at the end (the daemon closes first).",
        "",
        "| targets | probe | daemon CPU % | listener CPU % | peak RSS MiB | fds peak | fds mean | TIME_WAIT | probes/s | slip % | targets up | open | refused | ServiceDown |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['variant']} | {f(r['cpu_pct'], 1)} | {f(r['listener_cpu_pct'], 1)} | {f(r['rss'], 0)} | "
            f"{r['fd_peak']} | {f(r['fd_mean'], 1)} | {r['time_wait']:,} | {f(r['probes_per_s'], 1)} | {f(r['slip_pct'])} | "
            f"{r['up']:,} | {r['open']:,} | {r['refused']:,} | {r['service_down']:,} |")
    return "\n".join(lines) + "\n"


def write(out, body):
    h.write_section(out, "bench:tcp", body)
