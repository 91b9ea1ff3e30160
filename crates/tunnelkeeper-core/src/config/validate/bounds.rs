//! Bounds on free-form values: lengths of strings and the form of URLs, so that a typo or
//! a pasted paragraph is refused at `check-config` with its line, not carried into every
//! page (a 100,000-character region, a runbook URL whose host is an emoji).

/// The longest AWS region name accepted (the longest real one has 14 characters).
pub const MAX_REGION_LEN: usize = 32;
/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The least ICMP echo payload accepted: ping's own minimum (room for its timestamp).
pub const MIN_PAYLOAD_BYTES: u32 = 8;

/// Checks an `http://` or `https://` URL: ASCII only, no spaces, a host of letters, digits,
/// dots and hyphens (or an IP literal), within [`MAX_URL_LEN`]. Returns what is wrong.
pub fn url_problem(url: &str) -> Option<String> {
    if url.len() > MAX_URL_LEN {
        return Some(format!(
            "is {} characters long, over {MAX_URL_LEN}",
            url.len()
        ));
    }
    if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
        return Some(format!(
            "{url:?} has {c:?}: a URL is ASCII without spaces (write an internationalised host in its xn-- form)"
        ));
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Some(format!("{url:?} is not an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let port_ok = host_port
        .rsplit_once(']')
        .map_or(host_port, |(_, p)| p)
        .split_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_ok());
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !host_ok || !port_ok {
        return Some(format!("{url:?} has no valid host[:port]"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_for_form() {
        for good in [
            "https://wiki.city.example/tunnelkeeper/runbook",
            "http://10.0.0.5:8080/runbook#x",
            "https://user@wiki.example/a?b=c",
            "https://[::1]:9093/",
            "https://xn--bcher-kva.example/",
        ] {
            assert_eq!(url_problem(good), None, "{good}");
        }
        for (bad, says) in [
            ("https://wiki.🔥.example/runbook", "'🔥'"),
            ("https://wiki.example/run book", "' '"),
            ("wiki.example/runbook", "not an http:// or https:// URL"),
            ("ftp://wiki.example/", "not an http:// or https:// URL"),
            ("https:///runbook", "no valid host"),
            ("https://wiki.example:99999/", "no valid host"),
            ("https://wiki_example/", "no valid host"),
        ] {
            let problem = url_problem(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(problem.contains(says), "{bad}: {problem}");
        }
        let long = format!("https://wiki.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(url_problem(&long).unwrap().contains("over 2048"));
    }

    /// The config with `extra` appended, refused: its error text.
    fn refusal(extra: &str) -> String {
        let base = "[aws]\nregion = \"us-east-1\"\n\n[[vpn]]\nname = \"dc\"\n\
                    id = \"vpn-0123456789abcdef0\"\n  [[vpn.tunnel]]\n  name = \"dc-a\"\n\
                    \x20 outside_ip = \"52.2.144.13\"\n  targets = [\"10.0.0.1\"]\n";
        let text = format!("{base}{extra}");
        match crate::config::Config::parse(&text, "test.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_refusal_names_its_line_key_and_bound() {
        let long_region = "a".repeat(100_000);
        for (extra, says) in [
            // A missing key points at its table: the tunnel's name on line 12.
            (
                "  [[vpn.tunnel]]\n  name = \"dc-b\"\n  targets = [\"10.0.0.2\"]\n",
                "line 12, column 10: vpn[0].tunnel[1].outside_ip: missing",
            ),
            (
                "[probe]\npayload_bytes = 0\n",
                "line 12, column 17: probe.payload_bytes: 0 is under 8",
            ),
            (
                "[alerts]\nrunbook_url = \"https://wiki.🔥.example/runbook\"\n",
                "line 12, column 15: alerts.runbook_url: \"https://wiki.🔥.example/runbook\" has '🔥'",
            ),
        ] {
            let error = refusal(extra);
            assert!(error.contains(says), "{extra}\n{error}");
        }
        let text =
            format!("[[target]]\naddress = \"10.0.0.1\"\n[aws]\nregion = \"{long_region}\"\n");
        let error = crate::config::Config::parse(&text, "test.toml")
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("line 4, column 10: aws.region: is 100000 characters long"),
            "{}",
            &error[..error.len().min(300)]
        );
        assert!(error.len() < 1000, "the value is not repeated back");
    }
}
