"""The parts of deploy/terraform/check.sh that read YAML and JSON.

    checks.py user-data USER_DATA CONFIG_TOML SYSCTL_CONF OUT_DIR
        Checks the rendered cloud-init user data and writes the files it would create
        (config.toml, install.sh) into OUT_DIR.
    checks.py iam-inputs POLICY_JSON
        Prints, as .tfvars lines, the namespace and topic ARN that POLICY_JSON uses, so that
        the module's policy can be rendered with the same ones.
    checks.py iam POLICY_JSON MODULE_POLICY_JSON
        Compares the module's rendered policy with POLICY_JSON, statement by statement.
    checks.py routing EXAMPLE_TOML RENDERED_TOML
        Checks that the rendered config routes pages as the example config does: the same
        sinks' severities, escalate_after, group_wait and [alerts.severity].

Exits 1 with a message on stderr when a check fails. Needs PyYAML (checkov brings it).
"""

import json
import sys
from pathlib import Path

import yaml

# EC2 refuses user data over 16 KB (before base64).
USER_DATA_LIMIT = 16384

CONFIG_PATH = "/etc/tunnelkeeper/config.toml"
SYSCTL_PATH = "/etc/sysctl.d/60-tunnelkeeper.conf"
INSTALL_PATH = "/usr/local/sbin/tunnelkeeper-install"


def fail(message):
    print(f"checks.py: {message}", file=sys.stderr)
    sys.exit(1)


def settings(text):
    """Returns the sysctl settings in a sysctl.d file, as (key, value) pairs."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        out.append((key.strip(), " ".join(value.split())))
    return out


def user_data(path, config_path, sysctl_path, out_dir):
    raw = Path(path).read_bytes()
    if not raw.startswith(b"#cloud-config\n"):
        fail(f"{path}: user data must start with '#cloud-config' for cloud-init to read it")
    if len(raw) > USER_DATA_LIMIT:
        fail(f"{path}: {len(raw)} bytes of user data; EC2 takes at most {USER_DATA_LIMIT}")
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        fail(f"{path}: not YAML: {e}")
    if not isinstance(doc, dict):
        fail(f"{path}: the cloud-config is not a mapping")

    files = {}
    for entry in doc.get("write_files") or []:
        files[entry.get("path")] = entry
    for needed in (CONFIG_PATH, SYSCTL_PATH, INSTALL_PATH):
        if needed not in files:
            fail(f"{path}: write_files does not write {needed}")

    # Written out first, so that check-config and shellcheck still run when a comparison
    # below fails.
    written = files[CONFIG_PATH].get("content", "")
    script = files[INSTALL_PATH].get("content", "")
    out = Path(out_dir)
    (out / "config.toml").write_text(written)
    (out / "install.sh").write_text(script)

    # The file cloud-init writes must be, byte for byte, the config the module rendered.
    rendered = Path(config_path).read_text()
    if written != rendered:
        fail(f"{path}: {CONFIG_PATH} as written by cloud-init differs from the rendered config (an indentation problem in the template?)")

    # The sysctl drop-in says what systemd/60-tunnelkeeper.conf says.
    want = settings(Path(sysctl_path).read_text())
    got = settings(files[SYSCTL_PATH].get("content", ""))
    if want != got:
        fail(f"{path}: {SYSCTL_PATH} sets {got}, {sysctl_path} sets {want}")

    if files[INSTALL_PATH].get("permissions") != "0755":
        fail(f"{path}: {INSTALL_PATH} is not executable (permissions {files[INSTALL_PATH].get('permissions')!r})")
    runcmd = [c if isinstance(c, list) else [c] for c in doc.get("runcmd") or []]
    if [INSTALL_PATH] not in runcmd:
        fail(f"{path}: runcmd does not run {INSTALL_PATH}")

    from_s3 = "url='s3://" in script
    if from_s3 != ("awscli" in (doc.get("packages") or [])):
        fail(f"{path}: an s3:// package needs the awscli package, and only then")


def load_policy(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def as_list(value):
    return sorted(value) if isinstance(value, list) else [value]


def statements(policy, path):
    """Maps Sid to the statement, with Action and Resource as sorted lists."""
    out = {}
    for s in policy.get("Statement", []):
        sid = s.get("Sid")
        if not sid or sid in out:
            fail(f"{path}: every statement needs its own Sid to be compared ({s})")
        norm = dict(s)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in norm:
                norm[key] = as_list(norm[key])
        out[sid] = norm
    return out


def iam_inputs(path):
    policy = load_policy(path)
    namespaces, topics = set(), set()
    for s in policy.get("Statement", []):
        for values in (s.get("Condition") or {}).values():
            if "cloudwatch:namespace" in values:
                namespaces.update(as_list(values["cloudwatch:namespace"]))
        for resource in as_list(s.get("Resource", [])):
            if resource.startswith("arn:aws:sns:"):
                topics.add(resource)
    if len(namespaces) != 1 or len(topics) != 1:
        fail(f"{path}: expected one cloudwatch:namespace condition and one SNS topic ARN, found {sorted(namespaces)} and {sorted(topics)}")
    print(f"cloudwatch_namespace = {json.dumps(namespaces.pop())}")
    print(f"sns_topic_arn = {json.dumps(topics.pop())}")
    print("create_sns_topic = false")
    # The maintenance statement is there exactly when the daemon applies maintenance.
    applies = any("ec2:ReplaceVpnTunnel" in as_list(s.get("Action", [])) for s in policy.get("Statement", []))
    print(f"maintenance_apply = {json.dumps('when-safe' if applies else 'never')}")


def iam(path, module_path):
    project = statements(load_policy(path), path)
    module = statements(load_policy(module_path), "the module's policy")

    def actions(stmts):
        return {a for s in stmts.values() for a in s.get("Action", [])}

    problems = []
    only_project = sorted(actions(project) - actions(module))
    only_module = sorted(actions(module) - actions(project))
    if only_project:
        problems.append(f"actions in {path} that the module's role lacks: {', '.join(only_project)}")
    if only_module:
        problems.append(f"actions the module's role has beyond {path}: {', '.join(only_module)}")
    for sid in sorted(set(project) | set(module)):
        if sid not in module:
            problems.append(f"statement {sid} is in {path} but not in documents.tf")
        elif sid not in project:
            problems.append(f"statement {sid} is in documents.tf but not in {path}")
        elif project[sid] != module[sid]:
            problems.append(f"statement {sid} differs:\n    {path}: {json.dumps(project[sid], sort_keys=True)}\n    module: {json.dumps(module[sid], sort_keys=True)}")
    if problems:
        fail(f"the instance role's policy (documents.tf, daemon_policy) does not match {path}:\n  " + "\n  ".join(problems))
    print(f"{len(project)} statements, actions: {', '.join(sorted(actions(project)))}")


# The daemon's defaults for what routing reads (crates/tunnelkeeper-core/src/config).
ROUTING_DEFAULTS = {"escalate_after": "15m", "group_wait": "0s", "min_severity": "warning"}


def routing(path):
    """Returns how a config routes pages: per sink kind, the lowest severity it takes;
    how long a warning lasts before it is re-sent as critical; the first page's wait; and
    the severities the config forces on whole classes."""
    import tomllib

    try:
        alerts = tomllib.loads(Path(path).read_text()).get("alerts", {})
    except tomllib.TOMLDecodeError as e:
        fail(f"{path}: not TOML: {e}")
    sinks = sorted(
        (s["kind"], s.get("min_severity", ROUTING_DEFAULTS["min_severity"]))
        for s in alerts.get("sink", [{"kind": "log"}])
    )
    return {
        "sinks (kind, min_severity)": sinks,
        "escalate_after": alerts.get("escalate_after", ROUTING_DEFAULTS["escalate_after"]),
        "group_wait": alerts.get("group_wait", ROUTING_DEFAULTS["group_wait"]),
        "[alerts.severity]": alerts.get("severity", {}),
    }


def same_routing(example_path, rendered_path):
    example, rendered = routing(example_path), routing(rendered_path)
    # The example also shows an Alertmanager sink, which the module does not write: the
    # NOC's pager (sns) and the journal (log) must route alike.
    example["sinks (kind, min_severity)"] = [
        s for s in example["sinks (kind, min_severity)"] if s[0] != "alertmanager"
    ]
    differ = [k for k in example if example[k] != rendered[k]]
    for k in differ:
        print(f"{k}: {example_path} says {example[k]!r}, {rendered_path} says {rendered[k]!r}", file=sys.stderr)
    if differ:
        fail("the module's config routes pages differently from the example config")
    print(f"same routing: {example}")


def main(argv):
    commands = {"user-data": (user_data, 4), "iam-inputs": (iam_inputs, 1), "iam": (iam, 2), "routing": (same_routing, 2)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        fail(__doc__)
    function, _ = commands[argv[1]]
    function(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
