"""What keeping the smoke charts' history on disk costs, run by `bench/run.py --history`.

N loopback ICMP targets (127.1.x.y) pinned in a VGW's four tunnels at the default 1 s
interval, DGRAM as nobody, the state directory on the machine's own disk. The daemon
writes each closed minute into its ring files (one block of every series' slot a minute,
and one into the 5- and 15-minute rings as their windows close, fsynced) once a minute
from a thread of its own, `history-saver`. After a warm-up long enough for the
first save, measured over the span: the bytes the daemon had written to storage
(`write_bytes` of /proc/PID/io) and passed to write() (`wchar`), scaled to a day and per
target; the saver thread's CPU and the whole daemon's; the files' sizes at the end; RSS
(the median and the largest of a reading every 5 s); and probes sent against expected
(schedule slip: a save must not hold up probing). Each size runs twice: saving every
minute, and with saves put off past the run (`TUNNELKEEPER_HISTORY_SAVE_SECS`), the
baseline for what the saving costs in CPU and RSS.
"""

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import run as h

# The first save comes a minute after start; the span then holds several.
WARMUP_S = 65
MIN_SPAN_S = 120
RSS_EVERY_S = 5
HISTORY_FILES = ["history.series", "history-1m.ring", "history-5m.ring", "history-15m.ring"]
FILES = HISTORY_FILES + ["state.json", "outages.jsonl"]


def config(hosts):
    lines = ['[probe]\ninterval = "1s"\ntimeout = "1s"\nsocket = "dgram"\n', "[mtu]\nenabled = false\n"]
    groups = [hosts[i::4] for i in range(4)]
    for c in range(0, 4, 2):
        lines.append(f'[[vpn]]\nname = "c{c}"\n')
        for t, group in enumerate(groups[c:c + 2]):
            targets = ", ".join(f'"{host}"' for host in group)
            lines.append(f'  [[vpn.tunnel]]\n  name = "c{c}-t{t}"\n  targets = [{targets}]\n')
    return "".join(lines)


def io_counters(pid):
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def thread_cpu_seconds(pid, name):
    """CPU seconds of the daemon's thread called `name` (0 when it has none)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != name:
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / h.TICK
        except OSError:
            continue
    return 0.0


def file_sizes(path):
    """(apparent size, bytes allocated on disk): the ring files are sparse until written."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (st.st_size, st.st_blocks * 512)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sample_rss(pid, span):
    """RSS every RSS_EVERY_S over `span` seconds: it moves by a few MiB as the snapshots
    published twice a second come and go, so one reading is not the daemon's size."""
    samples, end = [], time.time() + span
    while True:
        samples.append(rss_mib(pid))
        left = end - time.time()
        if left <= 0:
            return samples
        time.sleep(min(RSS_EVERY_S, left))


def run_one(args, hosts, workdir, saves):
    port = h.free_port()
    path = os.path.join(workdir, f"history-{len(hosts)}-{saves}.toml")
    with open(path, "w") as f:
        f.write(config(hosts))
    os.chmod(path, 0o644)
    state = tempfile.mkdtemp(prefix="tk-bench-history-")
    shutil.chown(state, "nobody", "nogroup")
    env = {**os.environ, "RUST_LOG": "warn", "AWS_EC2_METADATA_DISABLED": "true"}
    if not saves:
        env["TUNNELKEEPER_HISTORY_SAVE_SECS"] = "1000000"
    proc = subprocess.Popen(
        h.as_user("dgram") + [args.binary, "run", "--config", path, "--listen", f"127.0.0.1:{port}",
                              "--state-dir", state],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, preexec_fn=h.more_files)
    span = max(args.duration, MIN_SPAN_S)
    try:
        h.wait_http(port, "/-/ready", limit=120, proc=proc)
        time.sleep(max(args.warmup, WARMUP_S))
        m0 = h.http_get(port, "/metrics")
        io0, cpu0 = io_counters(proc.pid), h.cpu_seconds(proc.pid)
        saver0, t0 = thread_cpu_seconds(proc.pid, "history-saver"), time.time()
        rss_samples = sample_rss(proc.pid, span)
        io1, cpu1 = io_counters(proc.pid), h.cpu_seconds(proc.pid)
        saver1, t1 = thread_cpu_seconds(proc.pid, "history-saver"), time.time()
        m1 = h.http_get(port, "/metrics")
        status = json.loads(h.http_get(port, "/status"))
        if proc.poll() is not None:
            raise SystemExit(f"tunnelkeeper exited with status {proc.returncode} while measured")
        seconds = t1 - t0
        sizes = {name: file_sizes(os.path.join(state, name)) for name in FILES}
        sent = h.metric_sum(m1, "tunnelkeeper_probe_sent_total") - h.metric_sum(m0, "tunnelkeeper_probe_sent_total")
        day = 86_400 / seconds
        r = {
            "n": len(hosts),
            "saves": saves,
            "seconds": seconds,
            "write_bytes_day": (io1["write_bytes"] - io0["write_bytes"]) * day,
            "wchar_day": (io1["wchar"] - io0["wchar"]) * day,
            "saver_cpu_pct": 100.0 * (saver1 - saver0) / seconds,
            "cpu_pct": 100.0 * (cpu1 - cpu0) / seconds,
            "rss": statistics.median(rss_samples),
            "rss_max": max(rss_samples),
            "peak_rss": h.peak_rss_mib(proc.pid),
            "sizes": sizes,
            "slip_pct": max(0.0, 100.0 * (1 - sent / (len(hosts) * seconds))),
            "up": sum(1 for c in status["connections"] for t in c["tunnels"] for x in t["targets"]
                      if x["state"] == "up"),
        }
        print(f"  history N={len(hosts)}: {r}", flush=True)
        return r
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def measure(args, workdir):
    rows = []
    for n in args.size_list:
        for saves in [True, False]:
            print(f"measuring the history's disk cost: {n} targets, saves {saves}", flush=True)
            rows.append(run_one(args, h.targets(n), workdir, saves))
    return rows


def mib(b):
    return f"{b / (1 << 20):,.1f}"


def history_size(r, which):
    return sum(r["sizes"][name][which] for name in HISTORY_FILES)


def report(args, rows):
    f = h.fmt
    lines = [
        f"History on disk: N loopback ICMP targets in a VGW's 4 tunnels at 1 s, DGRAM as nobody, binary "
        f"`{args.binary}`; measured over {max(args.duration, MIN_SPAN_S):.0f} s after {max(args.warmup, WARMUP_S):.0f} s. "
        f"Bytes per day are the span's scaled to 86,400 s: `write_bytes` is what reached the storage layer "
        f"(all files: history, alert state, outage log), `wchar` what was passed to write() and send() on every descriptor, sockets included. The saver is the "
        f"`history-saver` thread; CPU % is of one core.",
        "",
        "| targets | saves | history files (allocated) | written to storage per day | per target per day | passed to write() per day | "
        "saver CPU % | daemon CPU % | RSS MiB (median, max) | RSS per target (median) | slip % | targets up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {'every minute' if r['saves'] else 'none (baseline)'} | "
            f"{history_size(r, 0) / 1024:,.0f} KiB ({history_size(r, 1) / 1024:,.0f} KiB) | {mib(r['write_bytes_day'])} MiB | "
            f"{r['write_bytes_day'] / r['n'] / 1024:,.0f} KiB | {mib(r['wchar_day'])} MiB | {f(r['saver_cpu_pct'], 2)} | "
            f"{f(r['cpu_pct'], 1)} | {f(r['rss'], 1)}, {f(r['rss_max'], 1)} | {r['rss'] * 1024 / r['n']:,.1f} KiB | {f(r['slip_pct'])} | "
            f"{r['up']:,} |")
    return "\n".join(lines) + "\n"


def write(out, body):
    h.write_section(out, "bench:history", body)
