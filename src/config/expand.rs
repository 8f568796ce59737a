//! Airflow's `expand_env_var`: `$NAME`, `${NAME}` and a leading `~` are expanded, repeatedly,
//! until the value stops changing (Python's `os.path.expandvars` + `os.path.expanduser`).
//! Unknown variables are left as written. The environment is passed in, so this is pure.

use std::collections::HashMap;

/// At most this many rounds (a variable that expands to itself stops earlier).
const MAX_ROUNDS: usize = 20;

/// Expands `value` against `env` the way Airflow does for every option value.
pub fn expand_env_var(value: &str, env: &HashMap<String, String>) -> String {
    let mut cur = value.to_string();
    for _ in 0..MAX_ROUNDS {
        let next = expand_user(&expand_vars(&cur, env), env);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// `posixpath.expandvars`: `$word` or `${anything}`, left alone when not set.
fn expand_vars(s: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('$') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let n = after
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                .map_or(after.len(), |(i, _)| i);
            (&after[..n], n)
        };
        match (consumed, env.get(name)) {
            (c, Some(v)) if c > 0 && !name.is_empty() => {
                out.push_str(v);
                rest = &after[consumed..];
            }
            _ => {
                // Not a (known) variable: keep the `$` and go on after it.
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `posixpath.expanduser` for `~` and `~/…` (from `$HOME`); `~user` is left alone.
fn expand_user(s: &str, env: &HashMap<String, String>) -> String {
    let Some(rest) = s.strip_prefix('~') else {
        return s.to_string();
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return s.to_string();
    }
    let Some(home) = env.get("HOME") else {
        return s.to_string();
    };
    let home = home.trim_end_matches('/');
    let joined = format!("{home}{rest}");
    if joined.is_empty() {
        "/".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [
            ("HOME", "/home/af/"),
            ("A", "alpha"),
            ("NEST", "$A-x"),
            ("SELF", "$SELF"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn variables_braces_and_unknowns() {
        let e = env();
        assert_eq!(expand_env_var("$A/${A}_$A_", &e), "alpha/alpha_$A_");
        assert_eq!(
            expand_env_var("$NOPE ${NOPE} $ ${", &e),
            "$NOPE ${NOPE} $ ${"
        );
        assert_eq!(expand_env_var("cost 5$", &e), "cost 5$");
    }

    #[test]
    fn repeated_until_stable() {
        let e = env();
        assert_eq!(expand_env_var("$NEST", &e), "alpha-x");
        assert_eq!(expand_env_var("$SELF", &e), "$SELF");
    }

    #[test]
    fn tilde_only_at_start() {
        let e = env();
        assert_eq!(expand_env_var("~/airflow", &e), "/home/af/airflow");
        assert_eq!(expand_env_var("~", &e), "/home/af");
        assert_eq!(expand_env_var("a/~/b", &e), "a/~/b");
        assert_eq!(expand_env_var("~bob/x", &e), "~bob/x");
        assert_eq!(expand_env_var("~/x", &HashMap::new()), "~/x");
    }
}
