//! The code's shape, checked on every run: the core crate depends on no runtime, socket,
//! HTTP or AWS crate; no import circle between the top-level modules of either crate; no
//! file over 800 lines; no function over 150 lines outside tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const CRATE_ROOTS: [&str; 2] = ["src", "crates/tunnelkeeper-core/src"];
const FORBIDDEN_IN_CORE: [&str; 10] = [
    "tokio",
    "mio",
    "socket2",
    "surge-ping",
    "hyper",
    "axum",
    "tower",
    "rustls",
    "prometheus",
    "aws-",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's text before its `#[cfg(test)] mod tests`, if any.
fn outside_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let start = at + i;
        let rest = text[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") || rest.starts_with("pub(crate) mod tests") {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

/// Functions longer than `limit` lines: (lines, name).
fn long_functions(text: &str, limit: usize) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = match t.strip_prefix("pub(") {
            Some(rest) => rest.split_once(") ").map_or(t, |(_, r)| r),
            None => t.strip_prefix("pub ").unwrap_or(t),
        };
        let t = t.strip_prefix("async ").unwrap_or(t);
        let t = t.strip_prefix("const ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            let opens = l.matches('{').count() as i64;
            depth += opens - l.matches('}').count() as i64;
            opened |= opens > 0;
            if opened && depth <= 0 {
                if j - i + 1 > limit {
                    found.push((j - i + 1, name.clone()));
                }
                break;
            }
        }
    }
    found
}

#[test]
fn no_file_over_800_lines_and_no_function_over_150_outside_tests() {
    let mut problems = Vec::new();
    for crate_root in CRATE_ROOTS {
        let mut files = Vec::new();
        rust_files(&root().join(crate_root), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let name = file.strip_prefix(root()).unwrap().display().to_string();
            let lines = text.lines().count();
            if lines > 800 {
                problems.push(format!("{name}: {lines} lines"));
            }
            if name.ends_with("/tests.rs") {
                continue;
            }
            for (n, f) in long_functions(outside_tests(&text), 150) {
                problems.push(format!("{name}: fn {f} has {n} lines"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_length_check_sees_a_long_function() {
    let long = format!("fn big() {{\n{}}}\n", "    let x = 1;\n".repeat(160));
    assert_eq!(long_functions(&long, 150), [(162, "big".to_string())]);
    let test_only = format!("fn small() {{}}\n#[cfg(test)]\nmod tests {{\n{long}}}\n");
    assert!(long_functions(outside_tests(&test_only), 150).is_empty());
}

/// Each top-level module's imports of the crate's other top-level modules.
fn module_graph(crate_root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(crate_root, &mut files);
    for file in files {
        let rel = file.strip_prefix(crate_root).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in outside_tests(&text).match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A module that reaches itself through its imports, with the way round.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                if let Some(c) = walk(graph, next, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|k| walk(graph, k, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circle_between_the_modules_of_either_crate() {
    for crate_root in CRATE_ROOTS {
        let graph = module_graph(&root().join(crate_root));
        assert!(graph.len() > 5, "{crate_root}: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{crate_root}: import circle {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_circle_check_sees_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn the_core_crate_depends_on_no_runtime_socket_http_or_aws_crate() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "tunnelkeeper-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains("serde") && crates.contains("toml"),
        "{tree}"
    );
    let heavy: Vec<&&str> = crates
        .iter()
        .filter(|c| FORBIDDEN_IN_CORE.iter().any(|f| c.starts_with(f)))
        .collect();
    assert!(heavy.is_empty(), "the core crate pulls in {heavy:?}");
}
