//! `[mesos] database_url`: SQLAlchemy-style URLs (what Airflow's `sql_alchemy_conn` holds)
//! translated to sqlx URLs, and a printable form with the password masked.
//!
//! | written | used |
//! |---|---|
//! | `postgresql://…`, `postgresql+psycopg2://…`, `postgres+…://…` | `postgres://…` |
//! | `mysql://…`, `mysql+mysqldb://…`, `mysql+pymysql://…`, `mariadb+…://…` | `mysql://…` |
//! | `sqlite:////abs/path.db` (SQLAlchemy absolute) | `sqlite:///abs/path.db` |
//! | `sqlite:///abs/path.db`, `sqlite://path` (sqlx forms, as the default) | unchanged |
//! | `sqlite://` or `sqlite:///:memory:` | `sqlite::memory:` |
//!
//! Note the one ambiguity: SQLAlchemy reads `sqlite:///x.db` as the *relative* path `x.db`,
//! sqlx as `/x.db`. We follow sqlx (our default is written that way); write
//! `sqlite:////abs/x.db` (SQLAlchemy) or `sqlite:///abs/x.db` (sqlx) for an absolute path.
//! The store module owns connecting; this module only rewrites the text.

/// Translates `url` to a sqlx URL, or says what is wrong (without echoing a password).
pub fn translate_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://").or_else(|| {
        // `sqlite:path` and `sqlite::memory:` have no `//`.
        url.split_once(':')
            .filter(|(s, _)| s.eq_ignore_ascii_case("sqlite"))
    }) else {
        return Err("expected a URL such as sqlite:///path/airflow-mesos.db, postgresql://user@host/db or mysql://user@host/db".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    let dialect = scheme.split('+').next().unwrap_or("");
    match dialect {
        "postgres" | "postgresql" => Ok(format!("postgres://{rest}")),
        "mysql" | "mariadb" => Ok(format!("mysql://{rest}")),
        "sqlite" => {
            if !url.contains("://") {
                return Ok(format!("sqlite:{rest}"));
            }
            if rest.is_empty() || rest == "/:memory:" || rest == ":memory:" {
                Ok("sqlite::memory:".into())
            } else if let Some(abs) = rest.strip_prefix("//") {
                // SQLAlchemy's four slashes: sqlite:////abs → sqlite:///abs
                Ok(format!("sqlite:///{}", abs.trim_start_matches('/')))
            } else {
                Ok(format!("sqlite://{rest}"))
            }
        }
        other => Err(format!(
            "unsupported database {other:?}: expected sqlite, postgresql or mysql (SQLAlchemy driver suffixes like +psycopg2 are fine)"
        )),
    }
}

/// `url` with the password of its user info replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_string(),
    };
    format!("{}{}{}", &url[..start], masked, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translations() {
        for (from, to) in [
            (
                "postgresql+psycopg2://u:p@h:5432/db",
                "postgres://u:p@h:5432/db",
            ),
            ("postgresql://h/db", "postgres://h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "mysql+mysqldb://u:p@h/db?charset=utf8",
                "mysql://u:p@h/db?charset=utf8",
            ),
            ("mysql+pymysql://h/db", "mysql://h/db"),
            ("mariadb+mariadbconnector://h/db", "mysql://h/db"),
            ("sqlite:////var/lib/af.db", "sqlite:///var/lib/af.db"),
            (
                "sqlite:///root/airflow/airflow-mesos.db",
                "sqlite:///root/airflow/airflow-mesos.db",
            ),
            ("sqlite://rel.db", "sqlite://rel.db"),
            ("sqlite://", "sqlite::memory:"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("SQLite:x.db", "sqlite:x.db"),
        ] {
            assert_eq!(translate_url(from).unwrap(), to, "{from}");
        }
    }

    #[test]
    fn refusals_do_not_echo_passwords() {
        let e = translate_url("oracle://u:hunter2@h/db").unwrap_err();
        assert!(e.contains("oracle") && !e.contains("hunter2"), "{e}");
        assert!(translate_url("just text").is_err());
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgresql://u:p%40ss@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(redact_url("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact_url("sqlite:///a@b/x.db"), "sqlite:///a@b/x.db");
        assert_eq!(redact_url("postgres://h/db?x=@"), "postgres://h/db?x=@");
    }
}
