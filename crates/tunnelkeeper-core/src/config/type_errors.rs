//! Every type error at once. serde stops at the first value that does not fit the schema,
//! so the text is read again with each offending value blanked out (spaces, so that every
//! later position stays the same) until it fits, and each error is told with its line, its
//! key path, what was expected and an example.

use super::raw::RawConfig;
use super::Problem;

/// Enough for any real file; a cap so that a pathological one cannot loop for long.
const MAX_ERRORS: usize = 50;

/// What was read: the schema's view of the text if it could be reached, the text with
/// the bad values blanked, and the type errors met on the way.
pub(super) struct Typed {
    pub(super) raw: Option<RawConfig>,
    pub(super) text: String,
    pub(super) problems: Vec<Problem>,
    /// The key path a misspelt key was close to (`vpn[0].tunnel` for `[[vpn.tunnels]]`):
    /// the validator's "missing" on it is the same mistake.
    pub(super) meant: Vec<String>,
}

/// Reads `text` (already known to be valid TOML) into the schema, collecting every type
/// error instead of stopping at the first.
pub(super) fn read_all(text: &str) -> Typed {
    let mut working = text.to_string();
    let mut problems: Vec<Problem> = Vec::new();
    let mut blanked: Vec<(String, usize)> = Vec::new();
    let mut meant: Vec<String> = Vec::new();
    for _ in 0..MAX_ERRORS {
        let error = match toml::from_str::<RawConfig>(&working) {
            Ok(raw) => {
                return Typed {
                    raw: Some(raw),
                    text: working,
                    problems,
                    meant,
                }
            }
            Err(e) => e,
        };
        let message = error.message().trim().to_string();
        let Some(span) = error.span() else {
            problems.push(Problem {
                position: None,
                key: "(file)".into(),
                message,
            });
            break;
        };
        let (line, column) = line_col(&working, span.start);
        // Key paths come from the original text: blanking never moves a line.
        let key = key_path_at(text, line);
        if let Some(field) = missing_field(&message) {
            // A required key blanked for its type: put back a value of the right type
            // (the validator's word on it is dropped) and read on.
            let wanted = format!("{key}.{field}");
            if let Some(&at) = blanked.iter().find(|(k, _)| *k == wanted).map(|(_, l)| l) {
                if refill(&mut working, at, field) {
                    continue;
                }
            }
            // Genuinely missing: the table goes (when nothing nested follows it) and the
            // reading goes on; otherwise it stops here.
            problems.push(Problem {
                position: Some((line, column)),
                key: key.clone(),
                message,
            });
            if !blank_table(&mut working, line, false) {
                break;
            }
            blanked.push((key, line));
            continue;
        }
        if let Some(unknown) = unknown_field(&message) {
            // A misspelt key or table: told with the nearest known name, then taken out
            // (a table with the tables nested in it) so that the rest is read as well.
            let message = match suggest(unknown, &message) {
                Some(known) => {
                    meant.push(sibling(&key, known));
                    format!("{message}; did you mean `{known}`?")
                }
                None => message,
            };
            problems.push(Problem {
                position: Some((line, column)),
                key: key.clone(),
                message,
            });
            let removed = if header_name(working.split('\n').nth(line - 1).unwrap_or("")).is_some()
            {
                blank_table(&mut working, line, true)
            } else {
                blank_value(&mut working, line)
            };
            if !removed {
                break;
            }
            continue;
        }
        problems.push(Problem {
            position: Some((line, column)),
            key: key.clone(),
            message: explain(&key, &message),
        });
        if !blank_value(&mut working, line) {
            break;
        }
        blanked.push((key, line));
    }
    Typed {
        raw: None,
        text: working,
        problems,
        meant,
    }
}

/// Gives a validator problem the key it has in the file: a table blanked for a missing
/// key is absent to the validator, so the later tables of its array came one index lower.
pub(super) fn reindex(mut p: Problem, blanked: &[String]) -> Problem {
    // Blanked tables are keyed `path[i]`; a blanked value's key ends in a name, not `]`.
    let mut tables: Vec<(&str, usize)> = blanked
        .iter()
        .filter_map(|b| {
            let open = b.rfind('[')?;
            let index = b.strip_suffix(']')?.get(open + 1..)?.parse().ok()?;
            Some((&b[..open], index))
        })
        .collect();
    tables.sort_by_key(|(_, i)| *i);
    for (path, index) in tables {
        let Some(rest) = p.key.strip_prefix(path).and_then(|r| r.strip_prefix('[')) else {
            continue;
        };
        let Some(close) = rest.find(']') else {
            continue;
        };
        let Ok(mut j) = rest[..close].parse::<usize>() else {
            continue;
        };
        if j >= index {
            j += 1;
            p.key = format!("{path}[{j}]{}", &rest[close + 1..]);
        }
    }
    p
}

/// Returns the field serde says is missing: "missing field `name`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
}

/// Returns the field serde says is unknown: "unknown field `name`, expected ...".
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
}

/// Returns the known field nearest to `unknown` among those serde's message lists
/// ("expected one of `a`, `b`" or "expected `a`"), if one is close enough to be a typo:
/// at most a third of the name's letters off (one for short names).
fn suggest<'m>(unknown: &str, message: &'m str) -> Option<&'m str> {
    let (_, expected) = message.split_once("expected")?;
    let limit = (unknown.chars().count() / 3).max(1);
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (edit_distance(unknown, known), known))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Returns the key path of `name` beside the key at `path`: `vpn[0].tunnel` beside
/// `vpn[0].tunnels[0]`, `state_dir` beside `state_dri`.
fn sibling(path: &str, name: &str) -> String {
    let path = match path
        .strip_suffix(']')
        .and_then(|p| p.rfind('[').map(|i| &path[..i]))
    {
        Some(without_index) => without_index,
        None => path,
    };
    match path.rsplit_once('.') {
        Some((parent, _)) => format!("{parent}.{name}"),
        None => name.to_string(),
    }
}

/// Returns the optimal-string-alignment distance: insertions, deletions, substitutions and
/// swaps of two neighbours each count one (`intreval` is one from `interval`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Writes `field = <a value of its type>` on a blanked line (the line count stays).
fn refill(text: &mut String, line: usize, field: &str) -> bool {
    let value = match field {
        "address" | "outside_ip" => "\"0.0.0.0\"",
        _ => "\"\"",
    };
    let Some(start) = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .nth(line - 1)
    else {
        return false;
    };
    let end = text[start..].find('\n').map_or(text.len(), |e| start + e);
    text.replace_range(start..end, &format!("{field} = {value}"));
    true
}

/// Returns the 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Blanks the value on `line` (and the lines it continues on, for a value spread over
/// several) with spaces; false if the text cannot be made valid TOML that way.
fn blank_value(text: &mut String, line: usize) -> bool {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    if line > starts.len() || is_header(&text[starts[line - 1]..]) {
        return false;
    }
    for last in line..=(line + 200).min(starts.len()) {
        let mut candidate = text.clone();
        for l in line..=last {
            let start = starts[l - 1];
            let end = starts.get(l).map_or(candidate.len(), |e| e - 1);
            let blank = " ".repeat(end - start);
            candidate.replace_range(start..end, &blank);
        }
        if candidate.parse::<toml::Table>().is_ok() {
            *text = candidate;
            return true;
        }
    }
    false
}

/// Blanks the table whose header is on `line`, up to the next header. When the next one is
/// nested in it, that one goes too if `with_nested` (the table is unknown, so is what it
/// holds); otherwise nothing is blanked (what the nested one belongs to would change).
fn blank_table(text: &mut String, line: usize, with_nested: bool) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(name) = lines.get(line - 1).and_then(|l| header_name(l)) else {
        return false;
    };
    let nested = |l: &str| header_name(l).is_some_and(|next| next.starts_with(&format!("{name}.")));
    let end = (line..lines.len())
        .find(|i| is_header(lines[*i]) && !(with_nested && nested(lines[*i])))
        .unwrap_or(lines.len());
    if lines.get(end).is_some_and(|l| nested(l)) {
        return false;
    }
    let blanked: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if (line - 1..end).contains(&i) {
                " ".repeat(l.len())
            } else {
                (*l).to_string()
            }
        })
        .collect();
    let candidate = blanked.join("\n");
    if candidate.parse::<toml::Table>().is_err() {
        return false;
    }
    *text = candidate;
    true
}

/// Returns `vpn.tunnel` for `[[vpn.tunnel]]` or `[vpn.tunnel]`.
fn header_name(line: &str) -> Option<String> {
    let l = line.trim();
    let inner = l
        .strip_prefix("[[")
        .and_then(|r| r.split("]]").next())
        .or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))?;
    Some(inner.trim().to_string())
}

fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// Returns the key path of the value on `line`: `vpn[1].tunnel[0].name`, `probe.interval`.
pub(super) fn key_path_at(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut arrays: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut key = String::new();
    for (i, raw_line) in text.lines().enumerate().take(line) {
        let l = raw_line.trim();
        if let Some(inner) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let path = resolve(inner.trim(), &arrays, &counts);
            let n = counts.entry(path.clone()).or_insert(0);
            table = format!("{path}[{n}]");
            *n += 1;
            if !arrays.contains(&inner.trim().to_string()) {
                arrays.push(inner.trim().to_string());
            }
            key.clear();
        } else if let Some(inner) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = resolve(inner.trim(), &arrays, &counts);
            key.clear();
        } else if i + 1 == line {
            key = l
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_string();
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Turns a header's dotted name into a key path with the current index of every array of
/// tables on the way: `vpn.tunnel` in the second `[[vpn]]` is `vpn[1].tunnel`.
fn resolve(
    dotted: &str,
    arrays: &[String],
    counts: &std::collections::HashMap<String, usize>,
) -> String {
    let mut path = String::new();
    let mut prefix = String::new();
    for part in dotted.split('.').map(str::trim) {
        if !prefix.is_empty() {
            prefix.push('.');
            path.push('.');
        }
        prefix.push_str(part);
        path.push_str(part);
        if prefix != dotted && arrays.contains(&prefix) {
            let n = counts.get(&path).copied().unwrap_or(1);
            path.push_str(&format!("[{}]", n.saturating_sub(1)));
        }
    }
    path
}

/// Adds what the key wants, with an example, to serde's message.
fn explain(key: &str, message: &str) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    let hint = match leaf {
        "interval"
        | "timeout"
        | "for"
        | "keep_firing_for"
        | "group_wait"
        | "repeat_interval"
        | "escalate_after"
        | "flap_window"
        | "control_plane_unavailable_after"
        | "maintenance_grace"
        | "failover_grace"
        | "poll_interval"
        | "cloudwatch_interval"
        | "maintenance_interval"
        | "wait"
        | "linger"
        | "window" => Some(("a duration in quotes", "\"1s\" or \"500ms\" or \"2m\"")),
        "threshold" => Some(("a percentage in quotes", "\"5%\"")),
        "factor" => Some(("a number", "3.0")),
        "payload_bytes" => Some(("a whole number of bytes", "56")),
        "down_after" | "up_after" => Some(("a whole number of probes", "3")),
        "flap_changes" => Some(("a whole number of state changes", "4")),
        "address" | "outside_ip" => Some(("an IPv4 address in quotes", "\"172.16.1.10\"")),
        "targets" => Some((
            "a list of IPv4 addresses in quotes, or of tables with an address",
            "[\"172.16.1.10\"] or [{ address = \"172.16.1.10\", interval = \"500ms\" }]",
        )),
        "listen" => Some(("an address and port in quotes", "\"0.0.0.0:9478\"")),
        "name" => Some(("a name in quotes", "\"dc-primary\"")),
        "id" => Some(("a VPN connection id in quotes", "\"vpn-0123456789abcdef0\"")),
        "region" => Some(("a Region in quotes", "\"us-east-1\"")),
        "state_dir" => Some(("a directory in quotes", "\"/var/lib/tunnelkeeper\"")),
        "socket" => Some(("\"dgram\" or \"raw\"", "\"dgram\"")),
        "kind" => Some(("\"sns\", \"log\" or \"alertmanager\"", "\"sns\"")),
        "min_severity" | "maintenance_severity" | "severity" => {
            Some(("\"info\", \"warning\" or \"critical\"", "\"warning\""))
        }
        "send_resolved" | "enable_lifecycle" => Some(("true or false", "true")),
        "starts" | "ends" => Some(("an RFC 3339 time in quotes", "\"2026-12-24T22:00:00Z\"")),
        "url" => Some(("a URL in quotes", "\"http://alertmanager:9093\"")),
        "topic_arn" => Some((
            "an SNS topic ARN in quotes",
            "\"arn:aws:sns:us-east-1:123456789012:noc-page\"",
        )),
        _ => None,
    };
    match hint {
        Some((expected, example)) if !message.starts_with("unknown field") => {
            format!("{message}; {leaf} takes {expected}, for example {leaf} = {example}")
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_count_arrays_of_tables_under_their_parent() {
        let text = "[probe]\ninterval = 1\n[[vpn]]\nname = \"a\"\n  [[vpn.tunnel]]\n  name = 1\n[[vpn]]\nname = 2\n  [[vpn.tunnel]]\n  name = \"x\"\n  [[vpn.tunnel]]\n  outside_ip = 3\n[alerts]\n[[alerts.sink]]\nkind = 4\n";
        let path = |line| key_path_at(text, line);
        assert_eq!(path(2), "probe.interval");
        assert_eq!(path(6), "vpn[0].tunnel[0].name");
        assert_eq!(path(8), "vpn[1].name");
        assert_eq!(path(12), "vpn[1].tunnel[1].outside_ip");
        assert_eq!(path(15), "alerts.sink[0].kind");
    }

    #[test]
    fn blanking_keeps_positions_and_spans_multi_line_values() {
        let mut text = "a = [\n  1,\n  2,\n]\nb = 3\n".to_string();
        assert!(blank_value(&mut text, 1));
        assert_eq!(text.len(), "a = [\n  1,\n  2,\n]\nb = 3\n".len());
        assert_eq!(text.lines().nth(4), Some("b = 3"));
        assert!(
            text.lines().take(4).all(|l| l.trim().is_empty()),
            "{text:?}"
        );
    }

    fn problems_of(text: &str) -> Vec<String> {
        match crate::config::Config::parse(text, "t.toml") {
            Ok(_) => panic!("expected problems in:\n{text}"),
            Err(crate::config::ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            Err(e) => panic!("expected problems, got {e}"),
        }
    }

    #[test]
    fn a_misspelt_table_hides_no_other_problem_and_names_the_nearest_key() {
        let text = "[probe]\ninterval = 1\n\n[[vpn]]\nid = \"vpn-12\"\nname = \"dc\"\n  [[vpn.tunnels]]\n  name = \"dc-a\"\n  targets = [\"172.16.1.10\"]\n\n[[target]]\naddress = \"10.0.0.1\"\n";
        let problems = problems_of(text);
        let has = |line: &str, words: &[&str]| {
            problems
                .iter()
                .any(|p| p.starts_with(line) && words.iter().all(|w| p.contains(w)))
        };
        assert!(
            has("line 2,", &["probe.interval", "duration"]),
            "{problems:#?}"
        );
        assert!(has("line 5,", &["vpn[0].id", "vpn-12"]), "{problems:#?}");
        assert!(
            has(
                "line 7,",
                &["unknown field `tunnels`", "did you mean `tunnel`?"]
            ),
            "{problems:#?}"
        );
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }

    #[test]
    fn unknown_keys_in_several_tables_are_all_told_with_a_suggestion_where_one_is_close() {
        let text = "state_dri = \"/tmp\"\n[probes]\ninterval = \"1s\"\n[probe]\nintreval = \"1s\"\nwhatever = 3\n[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\ntargets = [\"10.0.0.1\"]\nouside_ip = \"1.2.3.4\"\n";
        let problems = problems_of(text);
        let expected = [
            ("line 1,", "unknown field `state_dri`", Some("`state_dir`")),
            ("line 2,", "unknown field `probes`", Some("`probe`")),
            ("line 5,", "unknown field `intreval`", Some("`interval`")),
            ("line 6,", "unknown field `whatever`", None),
            (
                "line 12,",
                "unknown field `ouside_ip`",
                Some("`outside_ip`"),
            ),
        ];
        for (line, what, suggestion) in expected {
            let p = problems
                .iter()
                .find(|p| p.starts_with(line) && p.contains(what))
                .unwrap_or_else(|| panic!("{line} {what} not in {problems:#?}"));
            match suggestion {
                Some(s) => assert!(p.ends_with(&format!("did you mean {s}?")), "{p}"),
                None => assert!(!p.contains("did you mean"), "{p}"),
            }
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn suggestions_come_from_the_expected_list_within_a_third_of_the_letters() {
        let cases = [
            (
                "tunnels",
                "unknown field `tunnels`, expected one of `id`, `name`, `tunnel`",
                Some("tunnel"),
            ),
            (
                "intreval",
                "unknown field `intreval`, expected one of `interval`, `timeout`",
                Some("interval"),
            ),
            (
                "nmae",
                "unknown field `nmae`, expected `name`",
                Some("name"),
            ),
            (
                "colour",
                "unknown field `colour`, expected one of `id`, `name`, `tunnel`",
                None,
            ),
            (
                "ab",
                "unknown field `ab`, expected one of `id`, `name`",
                None,
            ),
        ];
        for (unknown, message, want) in cases {
            assert_eq!(suggest(unknown, message), want, "{message}");
        }
        assert_eq!(edit_distance("intreval", "interval"), 1);
        assert_eq!(edit_distance("tunnels", "tunnel"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(sibling("vpn[0].tunnels[0]", "tunnel"), "vpn[0].tunnel");
        assert_eq!(sibling("probe.intreval", "interval"), "probe.interval");
        assert_eq!(sibling("state_dri", "state_dir"), "state_dir");
    }
}
