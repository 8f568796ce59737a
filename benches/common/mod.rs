//! What the benches share: environment knobs and throwaway databases on the test servers.
#![allow(dead_code)]

/// A `usize` from the environment variable `name`, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Makes an empty database `<prefix>_<pid>` next to the one `base` names; returns its URL.
pub async fn fresh_database(base: &str, prefix: &str) -> Result<String, sqlx::Error> {
    use sqlx::{Connection, Executor};
    let name = format!("{prefix}_{}", std::process::id());
    let (url_prefix, _) = base.rsplit_once('/').expect("a database URL with a path");
    if base.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(base).await?;
        c.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
            .await?;
        c.execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
    } else {
        let mut c = sqlx::MySqlConnection::connect(base).await?;
        c.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
            .await?;
        c.execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
    }
    Ok(format!("{url_prefix}/{name}"))
}

/// Drops the database `url` that [`fresh_database`] made next to `base`.
pub async fn drop_database(base: &str, url: &str) {
    use sqlx::{Connection, Executor};
    let name = url.rsplit('/').next().unwrap_or_default();
    let sql = format!("DROP DATABASE IF EXISTS {name}");
    if base.starts_with("postgres") {
        if let Ok(mut c) = sqlx::PgConnection::connect(base).await {
            let _ = c.execute(format!("{sql} WITH (FORCE)").as_str()).await;
        }
    } else if let Ok(mut c) = sqlx::MySqlConnection::connect(base).await {
        let _ = c.execute(sql.as_str()).await;
    }
}
