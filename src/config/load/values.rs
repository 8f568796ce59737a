//! Parsers of single values (numbers, roles, URLs, listen addresses, Docker environment, …):
//! pure functions from the text of a key to its value or to what was expected.

use super::*;

/// An `allowed_origins` entry: `scheme://host[:port]`, as browsers send it in `Origin`.
pub(super) fn parse_origin(t: &str) -> Result<String, String> {
    const EXPECTED: &str = "an origin such as https://airflow.example.com or http://127.0.0.1:8080";
    let u = url::Url::parse(t).map_err(|_| EXPECTED)?;
    if !matches!(u.scheme(), "http" | "https")
        || u.host_str().is_none_or(str::is_empty)
        || u.path() != "/"
        || u.query().is_some()
        || !u.username().is_empty()
    {
        return Err(EXPECTED.into());
    }
    Ok(u.origin().ascii_serialization())
}

/// Drops trailing `\n` / `\r\n` (command output, secret files).
/// `t` as the path of an existing file, or what was expected.
pub(super) fn existing_file(
    system: &dyn SystemAccess,
    what: &str,
    t: &str,
) -> Result<PathBuf, String> {
    let p = PathBuf::from(t);
    if system.is_file(&p) {
        Ok(p)
    } else {
        Err(format!("the path of an existing {what} file"))
    }
}

pub(super) fn trim_newlines(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r'])
}

/// `mesos` / `docker`.
pub fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Mesos => "mesos",
        Backend::Docker => "docker",
    }
}

/// Airflow's `getboolean`: lower-cased, anything after `#` dropped, then `t/true/1` or
/// `f/false/0`.
pub fn parse_bool(t: &str) -> Result<bool, String> {
    let v = t.to_lowercase();
    let v = v.split('#').next().unwrap_or("").trim();
    match v {
        "t" | "true" | "1" => Ok(true),
        "f" | "false" | "0" => Ok(false),
        _ => Err("a boolean: t, true, 1, f, false or 0 (any case)".into()),
    }
}

/// The largest number any key takes (seconds, MB, CPUs): far beyond any real value, small
/// enough that every duration and size made from it is representable.
pub(super) const MAX_NUMBER: f64 = 1e12;

pub(super) fn parse_number(t: &str, bound: Bound, unit: &str) -> Result<f64, String> {
    let expected = match bound {
        Bound::Positive => format!("a number greater than 0, in {unit}"),
        Bound::NonNegative => format!("a number, 0 or more, in {unit}"),
        Bound::AtLeast(min) => format!(
            "a number of at least {} (the smallest container), in {unit}",
            fmt_num(min)
        ),
    };
    let v: f64 = t.parse().map_err(|_| expected.clone())?;
    if v.is_finite() && v > MAX_NUMBER {
        return Err(format!("{expected} (at most {MAX_NUMBER:e})"));
    }
    let ok = v.is_finite()
        && match bound {
            Bound::Positive => v > 0.0,
            Bound::NonNegative => v >= 0.0,
            Bound::AtLeast(min) => v >= min,
        };
    if ok {
        Ok(v)
    } else {
        Err(expected)
    }
}

/// A number as Python would print a float default (`1.0` → `1`, `0.5` → `0.5`).
pub(super) fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// A Mesos role name (`*` or a name, possibly hierarchical `a/b`).
pub(super) fn parse_role(t: &str) -> Result<String, String> {
    const EXPECTED: &str = "a Mesos role: * or a name without whitespace, not . or .., not \
         starting with -, segments separated by single /";
    if t == "*" {
        return Ok(t.into());
    }
    let bad_segment = t
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('-') || s == "*");
    if bad_segment || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EXPECTED.into());
    }
    Ok(t.into())
}

/// `docker_environment`: a Python list of `{"name": .., "value": ..}` dicts (AVENTER), or a
/// plain `{"NAME": "value"}` dict.
pub(super) fn parse_docker_env(t: &str) -> Result<Vec<(String, String)>, String> {
    const EXPECTED: &str =
        "a Python list of {\"name\": \"VAR\", \"value\": \"text\"} dicts (or a {\"VAR\": \"text\"} dict)";
    let mut v = pylit::parse(t).map_err(|e| format!("{EXPECTED}; {e}"))?;
    if let PyValue::Str(inner) = &v {
        // The AVENTER README quotes the whole list: '[{"name": ..., "value": ...}]'.
        v = pylit::parse(inner).map_err(|e| format!("{EXPECTED}; inside the quotes: {e}"))?;
    }
    let mut out = Vec::new();
    match v {
        PyValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                let PyValue::Dict(fields) = item else {
                    return Err(format!("{EXPECTED}; item {} is not a dict", i + 1));
                };
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| *k == PyValue::Str(name.into()))
                        .map(|(_, v)| v)
                };
                let name = match field("name") {
                    Some(PyValue::Str(n)) if !n.is_empty() => n.clone(),
                    _ => return Err(format!("{EXPECTED}; item {} has no \"name\" string", i + 1)),
                };
                let value = field("value").and_then(PyValue::as_text).ok_or_else(|| {
                    format!(
                        "{EXPECTED}; item {} (\"{name}\") has no \"value\" string or number",
                        i + 1
                    )
                })?;
                out.push((name, value));
            }
        }
        PyValue::Dict(fields) => {
            for (k, v) in fields {
                match (k, v.as_text()) {
                    (PyValue::Str(k), Some(v)) if !k.is_empty() => out.push((k, v)),
                    _ => {
                        return Err(format!(
                        "{EXPECTED}; every key must be a string and every value a string or number"
                    ))
                    }
                }
            }
        }
        _ => return Err(EXPECTED.into()),
    }
    Ok(out)
}

/// `database_url`: translated to sqlx syntax by the store's [`translate_url`].
pub(super) fn parse_database_url(t: &str) -> Result<String, String> {
    translate_url(t).map_err(|e| {
        let why = match e {
            StoreError::InvalidUrl { reason, .. } => reason,
            StoreError::UnsupportedScheme { scheme, .. } => {
                format!("unsupported database `{scheme}`")
            }
            other => other.to_string(),
        };
        format!(
            "a database URL: sqlite:/abs/path.db, sqlite:////abs/path.db, \
             postgresql[+driver]://user@host/db or mysql[+driver]://user@host/db ({why})"
        )
    })
}

/// `mesos_attributes`: a Python list of constraint strings (`"name:value"`).
pub(super) fn parse_attributes(t: &str) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "a Python list of strings like [\"airflow:true\", \"zone:a?:zone:b\"]";
    match pylit::parse(t).map_err(|e| format!("{EXPECTED}; {e}"))? {
        PyValue::List(items) => items
            .into_iter()
            .map(|i| match i {
                PyValue::Str(s) if s.contains(':') => Ok(s),
                PyValue::Str(s) => Err(format!("{EXPECTED}; {s:?} has no name:value form")),
                _ => Err(format!("{EXPECTED}; every item must be a string")),
            })
            .collect(),
        _ => Err(EXPECTED.into()),
    }
}

/// `api_listen`: `IP:port`, `localhost:port`, or `*:port` / `:port` (all interfaces).
pub(super) fn parse_listen(t: &str) -> Result<SocketAddr, String> {
    const EXPECTED: &str =
        "host:port with an IP address (or localhost), e.g. 127.0.0.1:11000 or 0.0.0.0:11000";
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = t.rsplit_once(':').ok_or(EXPECTED)?;
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    let ip = match host.to_ascii_lowercase().as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => return Err(EXPECTED.into()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The URL clients use when `api_url` is unset: `api_listen`, with a wildcard address replaced
/// by loopback.
pub fn api_url_for(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// An `http(s)://host[:port][/path]` URL, without a trailing `/`.
pub(super) fn parse_http_url(t: &str) -> Result<String, String> {
    const EXPECTED: &str = "an http:// or https:// URL, e.g. http://10.0.0.5:11000";
    let u = url::Url::parse(t).map_err(|_| EXPECTED)?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(EXPECTED.into());
    }
    Ok(t.trim_end_matches('/').to_string())
}

/// `api_url`: one URL, or several daemons' comma-separated (clients try them in turn).
pub(super) fn parse_http_urls(t: &str) -> Result<String, String> {
    let urls = t
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(parse_http_url)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("one or more http:// URLs, comma-separated".into());
    }
    Ok(urls.join(","))
}

/// `docker_registry`: `host[:port]` (a scheme and path are dropped).
pub(super) fn parse_registry(t: &str) -> Result<String, String> {
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("a registry host[:port], e.g. registry.example.com:5000".into());
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_airflow() {
        for t in ["t", "TRUE", "True", "1", "true # yes", "  T  "] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for t in ["f", "False", "0", "FALSE#x"] {
            assert_eq!(parse_bool(t), Ok(false), "{t}");
        }
        for t in [
            "yes",
            "no",
            "on",
            "off",
            "yes-please",
            "2",
            "# only comment",
        ] {
            let e = parse_bool(t).unwrap_err();
            assert!(e.contains("t, true, 1, f, false or 0"), "{t}: {e}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0.5", Bound::Positive, "CPUs"), Ok(0.5));
        assert_eq!(parse_number("0", Bound::NonNegative, "s"), Ok(0.0));
        for bad in ["0", "-1", "abc", "inf", "NaN", ""] {
            assert!(parse_number(bad, Bound::Positive, "CPUs").is_err(), "{bad}");
        }
        assert!(parse_number("-0.1", Bound::NonNegative, "s").is_err());
        assert_eq!(fmt_num(604800.0), "604800");
        assert_eq!(fmt_num(0.1), "0.1");
    }

    #[test]
    fn roles() {
        for ok in ["*", "airflow", "eng/airflow", "a.b"] {
            assert_eq!(parse_role(ok), Ok(ok.to_string()));
        }
        for bad in [".", "..", "-x", "a b", "a//b", "/a", "a/", "a/*"] {
            assert!(parse_role(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_environment_forms() {
        assert_eq!(
            parse_docker_env(r#"[{"name": "A", "value": "1"}, {'name': 'B', 'value': 2}]"#)
                .unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert_eq!(
            parse_docker_env("{'A': 'x'}").unwrap(),
            vec![("A".into(), "x".into())]
        );
        assert_eq!(parse_docker_env("[]").unwrap(), vec![]);
        // Forms from the AVENTER READMEs: the list in quotes, and a bare tuple.
        assert_eq!(
            parse_docker_env(r#"'[{ "name":"A", "value":"1" }]'"#).unwrap(),
            vec![("A".into(), "1".into())]
        );
        assert_eq!(
            parse_docker_env(r#"{ "name":"A", "value":"1" }, { "name":"B", "value":"2" },"#)
                .unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        for bad in [
            "[{'value': 'x'}]",
            "[{'name': 'A'}]",
            "['A=1']",
            "'A=1'",
            "[{'name': 'A', 'value': None}]",
            "os.environ",
        ] {
            assert!(parse_docker_env(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attributes() {
        assert_eq!(
            parse_attributes("['airflow:true', \"zone:a?:zone:b\"]").unwrap(),
            vec!["airflow:true".to_string(), "zone:a?:zone:b".into()]
        );
        assert!(parse_attributes("['nocolon']").is_err());
        assert!(parse_attributes("[1]").is_err());
        assert!(parse_attributes("'a:b'").is_err());
    }

    #[test]
    fn listen_and_urls() {
        assert_eq!(
            parse_listen("0.0.0.0:8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(
            parse_listen(":11000").unwrap(),
            "0.0.0.0:11000".parse().unwrap()
        );
        assert_eq!(parse_listen("[::]:5").unwrap(), "[::]:5".parse().unwrap());
        for bad in ["11000", "example.com:1", "1.2.3.4:99999", "1.2.3.4"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
        assert_eq!(
            api_url_for("0.0.0.0:11000".parse().unwrap()),
            "http://127.0.0.1:11000"
        );
        assert_eq!(
            api_url_for("[::]:11000".parse().unwrap()),
            "http://[::1]:11000"
        );
        assert_eq!(
            api_url_for("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
        assert_eq!(parse_http_url("https://x:1/a/").unwrap(), "https://x:1/a");
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("x:1").is_err());
    }

    #[test]
    fn registries() {
        assert_eq!(
            parse_registry("reg.example.com:5000").unwrap(),
            "reg.example.com:5000"
        );
        assert_eq!(
            parse_registry("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert!(parse_registry("a b").is_err());
    }
}
