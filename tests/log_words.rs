//! Logs carry values, not Rust's debug forms: no `?field` and no `{:?}` in the daemon's
//! info, warn and error lines (where an operator reads them), so that a line says
//! `region=us-east-1`, never `region=Some(Region("us-east-1"))`. Debug and trace lines
//! may dump structures. Reads the source, as `tests/shape.rs` does.

use std::path::Path;

/// The arguments of every `info!`, `warn!` and `error!` call in `text`, with the line of
/// each, string literals blanked (a `?` inside a message is words, not a sigil).
fn log_calls(text: &str) -> Vec<(usize, String)> {
    let mut calls = Vec::new();
    for mac in ["info!(", "warn!(", "error!("] {
        let mut from = 0;
        while let Some(at) = text[from..].find(mac) {
            let start = from + at + mac.len();
            // A whole word: `tracing::warn!(` or ` warn!(`, not `prewarn!(`.
            let before = text[..from + at].chars().next_back();
            from = start;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let (mut depth, mut in_string, mut escaped, mut args) =
                (1, false, false, String::new());
            for c in text[start..].chars() {
                if in_string {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            in_string = false;
                            args.push('"');
                        }
                        _ => escaped = false,
                    }
                    // Keep format placeholders: `{x:?}` inside the message is the point.
                    if c == '{' || c == '}' || c == ':' || c == '?' {
                        args.push(c);
                    }
                    continue;
                }
                match c {
                    '"' => in_string = true,
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                args.push(c);
            }
            let line = text[..start].lines().count();
            calls.push((line, args));
        }
    }
    calls
}

/// Whether a call's arguments use a debug form: a `?` sigil before a field or value, or
/// `:?}` in its message.
fn debug_form(args: &str) -> bool {
    let chars: Vec<char> = args.chars().collect();
    let sigil = chars.windows(2).any(|w| {
        w[0] == '?' && (w[1].is_alphabetic() || w[1] == '_' || w[1] == '(' || w[1] == '&')
    });
    sigil || args.contains(":?}") || args.contains(":#?}")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn info_warn_and_error_lines_carry_values_not_debug_forms() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, args) in log_calls(&text) {
            if debug_form(&args) {
                found.push(format!("{}:{line}: {}", file.display(), args.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "log lines with Rust debug forms (use %value or a plain value):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_sees_debug_forms_and_not_words() {
    let calls = log_calls(
        "warn!(?limit, \"x\");\ninfo!(region = ?r, \"y\");\nerror!(\"retry at {at:?}\");\n\
         info!(n = %v, \"why? because\");\nprewarn!(?x);\n",
    );
    let mut flagged: Vec<(usize, bool)> = calls.iter().map(|(l, a)| (*l, debug_form(a))).collect();
    flagged.sort();
    assert_eq!(flagged, [(1, true), (2, true), (3, true), (4, false)]);
}
