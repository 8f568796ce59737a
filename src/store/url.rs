//! Database URLs: which dialect a URL names, SQLAlchemy → sqlx translation, and redaction of
//! passwords for messages. All pure.
//!
//! Airflow users configure `[database] sql_alchemy_conn` with SQLAlchemy URLs
//! (`postgresql+psycopg2://…`, `mysql+mysqldb://…`, `sqlite:////abs/path`); sqlx wants
//! `postgres://…`, `mysql://…` and `sqlite:/abs/path`. [`translate_url`] maps the first onto the
//! second. [`crate::store::Store::connect`] takes sqlx URLs (and, being unambiguous, also the
//! `postgresql:`, `mariadb:` and `+driver` spellings of the server schemes); only SQLite paths
//! differ in meaning between the two worlds, so SQLAlchemy SQLite URLs must be translated first.

use super::StoreError;

/// The SQL dialect a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    /// A short name for messages and metrics (`sqlite`, `postgres`, `mysql`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }
}

/// Splits `scheme[+driver]:rest` into the dialect and `rest`. The scheme is matched
/// case-insensitively; a `+driver` suffix (SQLAlchemy) is accepted for the server dialects.
fn split_scheme(url: &str) -> Result<(Dialect, Option<&str>, &str), StoreError> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(StoreError::InvalidUrl {
            url: redact_url(url),
            reason: "no `scheme:` (expected sqlite:, postgres:, postgresql:, mysql: or mariadb:)"
                .into(),
        });
    };
    let (base, driver) = match scheme.split_once('+') {
        Some((b, d)) => (b, Some(d)),
        None => (scheme, None),
    };
    let dialect = match base.to_ascii_lowercase().as_str() {
        "sqlite" | "sqlite3" => Dialect::Sqlite,
        "postgres" | "postgresql" | "pgsql" => Dialect::Postgres,
        "mysql" | "mariadb" => Dialect::MySql,
        _ => {
            return Err(StoreError::UnsupportedScheme {
                url: redact_url(url),
                scheme: scheme.to_string(),
            })
        }
    };
    Ok((dialect, driver, rest))
}

#[cfg(test)]
/// The dialect of a sqlx or SQLAlchemy URL, by its scheme.
pub fn dialect_of(url: &str) -> Result<Dialect, StoreError> {
    split_scheme(url).map(|(d, _, _)| d)
}

/// Rewrites the scheme of a server URL (`postgresql+psycopg2:`, `mariadb:`, …) to the one sqlx
/// parses (`postgres:` / `mysql:`). SQLite URLs are returned unchanged (see the module doc).
pub(crate) fn normalize_server_url(url: &str) -> Result<(Dialect, String), StoreError> {
    let (dialect, driver, rest) = split_scheme(url)?;
    Ok(match dialect {
        Dialect::Sqlite => {
            if driver.is_some() {
                return Err(StoreError::InvalidUrl {
                    url: redact_url(url),
                    reason: "a `sqlite+driver:` URL is SQLAlchemy syntax; translate it with \
                             `translate_url` first"
                        .into(),
                });
            }
            (dialect, url.to_string())
        }
        Dialect::Postgres => (dialect, format!("postgres:{rest}")),
        Dialect::MySql => (dialect, format!("mysql:{rest}")),
    })
}

/// Translates a SQLAlchemy URL (as in Airflow's `[database] sql_alchemy_conn`) to a sqlx URL;
/// sqlx URLs pass through.
///
/// - `postgresql+psycopg2://u:p@h/db` → `postgres://u:p@h/db` (any `+driver`, `postgresql`)
/// - `mysql+mysqldb://…`, `mysql+pymysql://…`, `mariadb://…` → `mysql://…`
/// - `sqlite:////abs/path` → `sqlite:///abs/path`; `sqlite:///rel/path` → `sqlite:rel/path`;
///   `sqlite://` and `sqlite:///:memory:` → `sqlite::memory:`
/// - `sqlite:path`, `sqlite:/abs`, `sqlite::memory:` (sqlx syntax) pass through.
///
/// Note that `sqlite:///x` is read the SQLAlchemy way (relative `x`), so the function is not
/// meant to be applied twice to a SQLite URL.
///
/// ```
/// use airflow_mesos::store::translate_url;
/// assert_eq!(translate_url("postgresql+psycopg2://u:p@db:5432/airflow").unwrap(),
///            "postgres://u:p@db:5432/airflow");
/// assert_eq!(translate_url("sqlite:////opt/airflow/airflow.db").unwrap(),
///            "sqlite:///opt/airflow/airflow.db");
/// ```
pub fn translate_url(url: &str) -> Result<String, StoreError> {
    let url = url.trim();
    let (dialect, _driver, rest) = split_scheme(url)?;
    match dialect {
        Dialect::Postgres => Ok(format!("postgres:{rest}")),
        Dialect::MySql => Ok(format!("mysql:{rest}")),
        Dialect::Sqlite => {
            let Some(after) = rest.strip_prefix("//") else {
                // sqlx syntax: `sqlite:path`, `sqlite:/abs`, `sqlite::memory:`.
                return Ok(format!("sqlite:{rest}"));
            };
            // SQLAlchemy: `sqlite://<empty host>/<path>`; the path is relative unless it starts
            // with another `/`.
            let (path, query) = match after.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (after, None),
            };
            let path = match path.strip_prefix('/') {
                Some(p) => p,
                None if path.is_empty() => "",
                None => {
                    return Err(StoreError::InvalidUrl {
                        url: redact_url(url),
                        reason: "a SQLite URL has no host: use `sqlite:////abs/path` or \
                                 `sqlite:///relative/path`"
                            .into(),
                    })
                }
            };
            let mut out = if path.is_empty() || path == ":memory:" {
                "sqlite::memory:".to_string()
            } else if path.starts_with('/') {
                format!("sqlite://{path}")
            } else {
                format!("sqlite:{path}")
            };
            if let Some(q) = query {
                // SQLAlchemy's pysqlite options (`?uri=true`, `?check_same_thread=…`) mean
                // nothing to sqlx; keep the sqlx ones (`mode`, `cache`, …) only.
                let kept: Vec<&str> = q
                    .split('&')
                    .filter(|kv| {
                        let k = kv.split('=').next().unwrap_or("");
                        matches!(k, "mode" | "cache" | "immutable" | "vfs")
                    })
                    .collect();
                if !kept.is_empty() {
                    out.push('?');
                    out.push_str(&kept.join("&"));
                }
            }
            Ok(out)
        }
    }
}

/// The URL with its password (userinfo after `:`, and any `password=` query value) replaced
/// by `***`, fit for messages and logs. Works on malformed URLs too.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let query_at = out[start..].find('?').map_or(out.len(), |i| start + i);
        // The last `@` before the query ends the userinfo, so passwords holding `@` or `/`
        // (not percent-encoded, as people do write them) are still covered.
        if let Some(at) = out[start..query_at].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

/// Whether a URL query parameter named `name` carries a credential (its value is masked):
/// passwords, tokens, secrets, keys and signatures, as pre-signed URLs and APIs name them.
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "token",
        "secret",
        "key",
        "sig",
        "signature",
        "auth",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// [`redact_url`] of every URL in a comma-separated list (a list of masters, of API URLs,
/// of origins); other text passes through.
pub fn redact_urls(list: &str) -> String {
    list.split(',')
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// The password of a URL, raw and percent-decoded, to scrub from third-party error texts.
pub(crate) fn passwords_in(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(start) = url.find("://").map(|i| i + 3) {
        let query_at = url[start..].find('?').map_or(url.len(), |i| start + i);
        if let Some(at) = url[start..query_at].rfind('@').map(|i| start + i) {
            if let Some((_, pw)) = url[start..at].split_once(':') {
                out.push(pw.to_string());
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=') {
                if k.eq_ignore_ascii_case("password") {
                    out.push(v.to_string());
                }
            }
        }
    }
    let decoded: Vec<String> = out
        .iter()
        .filter_map(|p| {
            url::form_urlencoded::parse(format!("x={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    out.extend(decoded);
    out.retain(|p| !p.is_empty());
    out.sort();
    out.dedup();
    out
}

/// `text` with every password of `url` replaced by `***`.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    for pw in passwords_in(url) {
        out = out.replace(&pw, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_server_urls_become_sqlx_urls() {
        let cases = [
            ("postgresql+psycopg2://u:p@h/db", "postgres://u:p@h/db"),
            (
                "postgresql://u:p@h:5433/db?sslmode=require",
                "postgres://u:p@h:5433/db?sslmode=require",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("mysql+mysqldb://u:p@h/db", "mysql://u:p@h/db"),
            (
                "mysql+pymysql://u:p@h:3307/db?charset=utf8mb4",
                "mysql://u:p@h:3307/db?charset=utf8mb4",
            ),
            ("mariadb+mariadbconnector://u:p@h/db", "mysql://u:p@h/db"),
            ("mysql://u:p@h/db", "mysql://u:p@h/db"),
        ];
        for (input, want) in cases {
            assert_eq!(translate_url(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn credentials_in_url_lists_and_query_parameters_are_masked() {
        assert_eq!(
            redact_urls(
                "https://files.example/creds.tar.gz?X-Amz-Signature=abc&v=2&access_token=t0k"
            ),
            "https://files.example/creds.tar.gz?X-Amz-Signature=***&v=2&access_token=***"
        );
        assert_eq!(
            redact_urls("http://u:pw1@m1:5050,http://m2:5050?token=s3"),
            "http://u:***@m1:5050,http://m2:5050?token=***"
        );
        assert_eq!(
            redact_urls("zk://jo:zkpw@z1:2181,z2:2181/mesos"),
            "zk://jo:***@z1:2181,z2:2181/mesos"
        );
        assert_eq!(redact_urls("https://ok.example"), "https://ok.example");
    }

    #[test]
    fn sqlalchemy_sqlite_paths_keep_their_meaning() {
        let cases = [
            (
                "sqlite:////abs/path/airflow.db",
                "sqlite:///abs/path/airflow.db",
            ),
            ("sqlite:///rel/airflow.db", "sqlite:rel/airflow.db"),
            ("sqlite://", "sqlite::memory:"),
            ("sqlite:///:memory:", "sqlite::memory:"),
            (
                "sqlite:////a.db?check_same_thread=false&mode=ro",
                "sqlite:///a.db?mode=ro",
            ),
            // sqlx syntax passes through
            ("sqlite:rel.db", "sqlite:rel.db"),
            ("sqlite:/abs.db", "sqlite:/abs.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (input, want) in cases {
            assert_eq!(translate_url(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        let e = translate_url("oracle://scott:tiger@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("oracle"), "{e}");
        assert!(!e.contains("tiger"), "{e}");
        assert!(translate_url("nocolon").is_err());
        let e = translate_url("sqlite://host/x").unwrap_err().to_string();
        assert!(e.contains("no host"), "{e}");
    }

    #[test]
    fn redaction_covers_odd_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("mysql://u:p@ss/w@h:1/db"),
            "mysql://u:***@h:1/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact_url("sqlite:///tmp/a@b.db"), "sqlite:///tmp/a@b.db");
        assert_eq!(
            scrub(
                "auth failed for s%40cret and s@cret",
                "postgres://u:s%40cret@h/db"
            ),
            "auth failed for *** and ***"
        );
    }

    #[test]
    fn server_schemes_are_normalized_for_sqlx() {
        assert_eq!(
            normalize_server_url("postgresql+psycopg2://u:p@h/db").unwrap(),
            (Dialect::Postgres, "postgres://u:p@h/db".to_string())
        );
        assert_eq!(
            normalize_server_url("mariadb://u:p@h/db").unwrap(),
            (Dialect::MySql, "mysql://u:p@h/db".to_string())
        );
        assert_eq!(dialect_of("sqlite:x.db").unwrap(), Dialect::Sqlite);
        assert!(normalize_server_url("sqlite+pysqlite:///x").is_err());
    }
}
