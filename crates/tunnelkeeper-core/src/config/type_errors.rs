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
}

/// Reads `text` (already known to be valid TOML) into the schema, collecting every type
/// error instead of stopping at the first.
pub(super) fn read_all(text: &str) -> Typed {
    let mut working = text.to_string();
    let mut problems: Vec<Problem> = Vec::new();
    let mut blanked: Vec<(String, usize)> = Vec::new();
    for _ in 0..MAX_ERRORS {
        let error = match toml::from_str::<RawConfig>(&working) {
            Ok(raw) => {
                return Typed {
                    raw: Some(raw),
                    text: working,
                    problems,
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
            if !blank_table(&mut working, line) {
                break;
            }
            blanked.push((key, line));
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

/// Blanks the table whose header is on `line`, up to the next header, unless that one is
/// nested in it (then what it belongs to would change).
fn blank_table(text: &mut String, line: usize) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(name) = lines.get(line - 1).and_then(|l| header_name(l)) else {
        return false;
    };
    let end = (line..lines.len())
        .find(|i| is_header(lines[*i]))
        .unwrap_or(lines.len());
    if lines
        .get(end)
        .and_then(|l| header_name(l))
        .is_some_and(|next| next.starts_with(&format!("{name}.")))
    {
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
        | "flap_window"
        | "control_plane_unavailable_after"
        | "maintenance_grace"
        | "failover_grace"
        | "poll_interval"
        | "cloudwatch_interval"
        | "maintenance_interval" => Some(("a duration in quotes", "\"1s\" or \"500ms\" or \"2m\"")),
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
}
