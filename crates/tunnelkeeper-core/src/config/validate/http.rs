//! Validation of `[http]`'s TLS and basic-auth tables (exporter-toolkit's names). The TLS
//! files themselves are read where the server starts, so that a reload re-reads them.

use super::*;

impl Validator<'_> {
    pub(super) fn tls(&mut self, raw: Option<&Spanned<RawTls>>) -> Option<TlsFiles> {
        let raw = raw?;
        let span = Some(raw.span());
        let tls = raw.get_ref();
        let mut path = |key: &str, value: &Option<String>| match value {
            Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
            Some(_) | None => {
                self.problem(
                    span.clone(),
                    &format!("http.tls_server_config.{key}"),
                    "missing: give the path of a PEM file, such as \"/etc/tunnelkeeper/tls.crt\""
                        .into(),
                );
                None
            }
        };
        let cert_file = path("cert_file", &tls.cert_file);
        let key_file = path("key_file", &tls.key_file);
        Some(TlsFiles {
            cert_file: cert_file?,
            key_file: key_file?,
            client_ca_file: tls.client_ca_file.as_ref().map(PathBuf::from),
        })
    }

    pub(super) fn basic_auth_users(
        &mut self,
        raw: Option<&std::collections::BTreeMap<String, Spanned<String>>>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut users = std::collections::BTreeMap::new();
        for (user, hash) in raw.into_iter().flatten() {
            let key = format!("http.basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                self.problem(
                    Some(hash.span()),
                    &key,
                    "a user name must be non-empty and without ':'".into(),
                );
                continue;
            }
            if !is_bcrypt_hash(hash.get_ref()) {
                self.problem(
                    Some(hash.span()),
                    &key,
                    "not a bcrypt hash: give one such as \"$2y$10$...\" (htpasswd -nBC 10 USER)"
                        .into(),
                );
                continue;
            }
            users.insert(user.clone(), hash.get_ref().clone());
        }
        users
    }
}

/// Whether `text` has the form of a bcrypt hash (`$2y$10$` and 53 characters of bcrypt's
/// base64: 22 of salt, 31 of hash), as htpasswd and the bcrypt crate write them. The hash
/// itself is checked at login, by the daemon.
fn is_bcrypt_hash(text: &str) -> bool {
    let parts: Vec<&str> = text.split('$').collect();
    let [empty, version, cost, rest] = parts.as_slice() else {
        return false;
    };
    empty.is_empty()
        && matches!(*version, "2a" | "2b" | "2x" | "2y")
        && cost.len() == 2
        && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c))
        && rest.len() == 53
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '/')
}

#[cfg(test)]
mod tests {
    use super::is_bcrypt_hash;

    #[test]
    fn bcrypt_hashes_are_told_by_their_form() {
        let good = "$2y$10$O8iWIJEWlwf9bLwZy4LmJe6l/QcoqhNBdNEZyIJ6v2Kn0AJ9oNH0W";
        assert!(is_bcrypt_hash(good));
        assert!(is_bcrypt_hash(&good.replace("$2y$", "$2b$")));
        for bad in [
            "",
            "s3cret",
            "$2y$10$short",
            "$1$10$O8iWIJEWlwf9bLwZy4LmJe6l/QcoqhNBdNEZyIJ6v2Kn0AJ9oNH0W",
            "$2y$99$O8iWIJEWlwf9bLwZy4LmJe6l/QcoqhNBdNEZyIJ6v2Kn0AJ9oNH0W",
            "$2y$10$O8iWIJEWlwf9bLwZy4LmJe6l/QcoqhNBdNEZyIJ6v2Kn0AJ9oNH0!",
            "$2y$10$O8iWIJEWlwf9bLwZy4LmJe6l/QcoqhNBdNEZyIJ6v2Kn0AJ9oNH0W$",
        ] {
            assert!(!is_bcrypt_hash(bad), "{bad}");
        }
    }
}
