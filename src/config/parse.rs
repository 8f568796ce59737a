//! The `airflow.cfg` file syntax, read the way Python's `configparser.ConfigParser` (as used by
//! Airflow) reads it, with the line number of every section and option kept for messages.
//!
//! Rules (Python defaults `delimiters=('=', ':')`, `comment_prefixes=('#', ';')`, no inline
//! comment prefixes, `strict=True`, `empty_lines_in_values=True`, `allow_no_value=False`):
//!
//! * a line whose stripped text starts with `#` or `;` is a comment; there are **no inline
//!   comments** (`key = v # c` keeps `# c` in the value);
//! * `[name]` starts a section (text after the last `]` is ignored); `[DEFAULT]` holds values
//!   every section inherits;
//! * `key = value` or `key: value`; the key is everything before the first delimiter, trimmed
//!   and lower-cased; the value is trimmed;
//! * a line indented deeper than its option's line continues the value (joined with `\n`);
//!   blank lines inside such a value are kept, trailing ones dropped;
//! * a section or an option (within one section) given twice is an error;
//! * `%%` is a literal `%` and `%(name)s` interpolates another option of the same section (or
//!   of `[DEFAULT]`) — see [`interpolate`].
//!
//! rust-ini is not used for reading: it keeps no line numbers, accepts duplicates silently and
//! treats indented comment lines and option lines without a delimiter differently from
//! configparser, so the same file could mean two different things to Airflow and to us.
//! Parse errors never echo the offending line (it may hold a secret).

use std::collections::HashMap;
use thiserror::Error;

/// One option as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniOption {
    /// The key, trimmed and lower-cased (configparser's `optionxform`).
    pub key: String,
    /// The raw value: trimmed, continuation lines joined with `\n`, not yet interpolated.
    pub value: String,
    /// 1-based line of the `key = value` line.
    pub line: usize,
}

/// One section and its options, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniSection {
    /// The name between the brackets, trimmed (case kept: configparser section names are
    /// case-sensitive).
    pub name: String,
    /// 1-based line of the first `[name]` header.
    pub line: usize,
    pub options: Vec<IniOption>,
}

impl IniSection {
    /// The option `key` (lower-case), if present.
    pub fn get(&self, key: &str) -> Option<&IniOption> {
        self.options.iter().find(|o| o.key == key)
    }
}

/// A parsed file: its sections in order, `[DEFAULT]` kept apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IniDoc {
    /// Options of `[DEFAULT]`, inherited by every section.
    pub defaults: Vec<IniOption>,
    pub sections: Vec<IniSection>,
}

impl IniDoc {
    /// The section named exactly `name`.
    pub fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// A syntax problem in the file. Messages name the line but never repeat its text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IniError {
    #[error("line {line}: an option appears before any [section] header")]
    MissingSectionHeader { line: usize },
    #[error("line {line}: a line that starts with `[` must be a section header, `[name]`")]
    BadSectionHeader { line: usize },
    #[error(
        "line {line}: expected `key = value`, a `[section]` header, a comment (`#` or `;` at \
         the start of the line) or an indented continuation line"
    )]
    Syntax { line: usize },
    #[error("line {line}: section [{name}] appears twice (first at line {first_line})")]
    DuplicateSection {
        name: String,
        line: usize,
        first_line: usize,
    },
    #[error(
        "line {line}: [{section}] {key} is given twice in the section (first at line {first_line})"
    )]
    DuplicateOption {
        section: String,
        key: String,
        line: usize,
        first_line: usize,
    },
}

impl IniError {
    /// The 1-based line the problem is on.
    pub fn line(&self) -> usize {
        match self {
            IniError::MissingSectionHeader { line }
            | IniError::BadSectionHeader { line }
            | IniError::Syntax { line }
            | IniError::DuplicateSection { line, .. }
            | IniError::DuplicateOption { line, .. } => *line,
        }
    }
}

const DEFAULT_SECTION: &str = "DEFAULT";

/// Where options of the current section go.
#[derive(Clone, Copy)]
enum Target {
    Defaults,
    Section(usize),
}

/// Parses `text` like configparser. Returns the document (everything that could be read) and
/// every syntax problem found; parsing goes on after a problem so that all are reported.
pub fn parse(text: &str) -> (IniDoc, Vec<IniError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut doc = IniDoc::default();
    let mut errors = Vec::new();
    let mut target: Option<Target> = None;
    // The option currently open for continuation lines: (target, index, pending lines).
    let mut open: Option<(Target, usize)> = None;
    let mut pending: Vec<String> = Vec::new();
    let mut indent_level = 0usize;
    // After a broken `[` header: options are skipped until the next good header.
    let mut in_broken_section = false;
    // Sections seen (name -> first line) and options seen per section (for strictness).
    let mut seen_sections: HashMap<String, usize> = HashMap::new();
    let mut seen_options: HashMap<(String, String), usize> = HashMap::new();

    fn flush(doc: &mut IniDoc, open: Option<(Target, usize)>, pending: &mut Vec<String>) {
        if let Some((t, i)) = open {
            let joined = pending.join("\n");
            let value = joined.trim_end().to_string();
            match t {
                Target::Defaults => doc.defaults[i].value = value,
                Target::Section(s) => doc.sections[s].options[i].value = value,
            }
        }
        pending.clear();
    }

    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        let stripped = line.trim();
        if stripped.starts_with('#') || stripped.starts_with(';') {
            // Whole-line comment: skipped, even inside a multi-line value.
            continue;
        }
        if stripped.is_empty() {
            // Kept inside a multi-line value (trailing ones are trimmed at the end).
            if open.is_some() {
                pending.push(String::new());
            }
            continue;
        }
        let cur_indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if open.is_some() && cur_indent > indent_level {
            pending.push(stripped.to_string());
            continue;
        }
        flush(&mut doc, open.take(), &mut pending);
        indent_level = cur_indent;

        if let Some(name) = section_header(stripped) {
            in_broken_section = false;
            if name == DEFAULT_SECTION {
                target = Some(Target::Defaults);
                continue;
            }
            if let Some(&first_line) = seen_sections.get(name) {
                errors.push(IniError::DuplicateSection {
                    name: name.to_string(),
                    line: lineno,
                    first_line,
                });
                let i = doc.sections.iter().position(|s| s.name == name);
                target = i.map(Target::Section);
                continue;
            }
            seen_sections.insert(name.to_string(), lineno);
            doc.sections.push(IniSection {
                name: name.to_string(),
                line: lineno,
                options: Vec::new(),
            });
            target = Some(Target::Section(doc.sections.len() - 1));
            continue;
        }
        if stripped.starts_with('[') {
            errors.push(IniError::BadSectionHeader { line: lineno });
            // Its options belong to no section read (not to the one before it).
            in_broken_section = true;
            continue;
        }
        if in_broken_section {
            continue;
        }
        let Some(t) = target else {
            errors.push(IniError::MissingSectionHeader { line: lineno });
            continue;
        };
        let Some(pos) = stripped.find(['=', ':']) else {
            errors.push(IniError::Syntax { line: lineno });
            continue;
        };
        let key = stripped[..pos].trim().to_lowercase();
        if key.is_empty() {
            errors.push(IniError::Syntax { line: lineno });
            continue;
        }
        let value = stripped[pos + 1..].trim().to_string();
        let section_name = match t {
            Target::Defaults => DEFAULT_SECTION.to_string(),
            Target::Section(s) => doc.sections[s].name.clone(),
        };
        if let Some(&first_line) = seen_options.get(&(section_name.clone(), key.clone())) {
            errors.push(IniError::DuplicateOption {
                section: section_name,
                key,
                line: lineno,
                first_line,
            });
            continue;
        }
        seen_options.insert((section_name, key.clone()), lineno);
        let opt = IniOption {
            key,
            value: String::new(),
            line: lineno,
        };
        let i = match t {
            Target::Defaults => {
                doc.defaults.push(opt);
                doc.defaults.len() - 1
            }
            Target::Section(s) => {
                doc.sections[s].options.push(opt);
                doc.sections[s].options.len() - 1
            }
        };
        pending.push(value);
        open = Some((t, i));
    }
    flush(&mut doc, open.take(), &mut pending);
    (doc, errors)
}

/// `[name]` → `name` (configparser's `\[(?P<header>.+)\]`: up to the last `]`).
fn section_header(stripped: &str) -> Option<&str> {
    let rest = stripped.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    let name = &rest[..end];
    (!name.is_empty()).then(|| name.trim())
}

/// Why a `%` in a file value could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InterpolationError {
    #[error("'%' must be followed by '%' or '(' (write %% for a literal %)")]
    Syntax,
    #[error("bad interpolation reference (expected %(name)s)")]
    BadReference,
    #[error("%({name})s refers to an option that is not in the section or in [DEFAULT]")]
    Missing { name: String },
    #[error("interpolation nested deeper than {MAX_DEPTH} levels (a reference loop?)")]
    TooDeep,
}

const MAX_DEPTH: usize = 10;

/// configparser's `BasicInterpolation`: `%%` → `%`, `%(name)s` → the (interpolated) value of
/// option `name` looked up with `lookup` (the section's options, then `[DEFAULT]`).
pub fn interpolate(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    interpolate_depth(value, lookup, 1)
}

fn interpolate_depth(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    if depth > MAX_DEPTH {
        return Err(InterpolationError::TooDeep);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            let close = r.find(')').ok_or(InterpolationError::BadReference)?;
            let name = &r[..close];
            let tail = r[close + 1..]
                .strip_prefix('s')
                .ok_or(InterpolationError::BadReference)?;
            if name.is_empty() {
                return Err(InterpolationError::BadReference);
            }
            let name = name.to_lowercase();
            let raw =
                lookup(&name).ok_or_else(|| InterpolationError::Missing { name: name.clone() })?;
            out.push_str(&interpolate_depth(&raw, lookup, depth + 1)?);
            rest = tail;
        } else {
            return Err(InterpolationError::Syntax);
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> IniDoc {
        let (doc, errs) = parse(text);
        assert!(errs.is_empty(), "unexpected errors: {errs:?}");
        doc
    }

    #[test]
    fn keys_values_lines_and_case() {
        let doc = one("[core]\nx = 1\n\n[mesos]\n  Task_CPU =  2.5  \nmaster: zk://a:2181/mesos\n");
        let m = doc.section("mesos").unwrap();
        assert_eq!(m.line, 4);
        assert_eq!(m.get("task_cpu").unwrap().value, "2.5");
        assert_eq!(m.get("task_cpu").unwrap().line, 5);
        // The first delimiter splits: `:` before `=`.
        assert_eq!(m.get("master").unwrap().value, "zk://a:2181/mesos");
        assert!(
            doc.section("Mesos").is_none(),
            "section names are case-sensitive"
        );
    }

    #[test]
    fn no_inline_comments_and_indented_comment_lines() {
        let doc = one("[mesos]\n# c\n   ; indented comment\nmaster = h:5050 # not a comment\n");
        let m = doc.section("mesos").unwrap();
        assert_eq!(m.get("master").unwrap().value, "h:5050 # not a comment");
        assert_eq!(m.options.len(), 1);
    }

    #[test]
    fn continuation_lines_blank_lines_and_comments_inside() {
        let doc =
            one("[mesos]\nenv = [\n    {'a': 1},\n\n    # skipped\n    {'b': 2}]\n\nnext = 1\n");
        let m = doc.section("mesos").unwrap();
        assert_eq!(m.get("env").unwrap().value, "[\n{'a': 1},\n\n{'b': 2}]");
        assert_eq!(m.get("next").unwrap().value, "1");
        assert_eq!(m.get("next").unwrap().line, 8);
    }

    #[test]
    fn trailing_blank_lines_of_a_value_are_dropped() {
        let doc = one("[mesos]\na = x\n  y\n\n\n[b]\n");
        assert_eq!(
            doc.section("mesos").unwrap().get("a").unwrap().value,
            "x\ny"
        );
    }

    #[test]
    fn duplicates_are_errors_with_both_lines() {
        let (_, errs) = parse("[mesos]\na = 1\nA = 2\n[x]\n[mesos]\nb = 1\n");
        assert_eq!(
            errs,
            vec![
                IniError::DuplicateOption {
                    section: "mesos".into(),
                    key: "a".into(),
                    line: 3,
                    first_line: 2
                },
                IniError::DuplicateSection {
                    name: "mesos".into(),
                    line: 5,
                    first_line: 1
                },
            ]
        );
    }

    /// A broken section header is named as one, wherever it is, and its options are not read
    /// into the section before it.
    #[test]
    fn a_broken_section_header_is_named_as_one() {
        let (doc, errs) =
            parse("[mesos\ntask_cpu = 2\n[core]\nx = 1\n[]\n[webserver\ny = 2\n[mesos]\nz = 3\n");
        assert_eq!(
            errs,
            vec![
                IniError::BadSectionHeader { line: 1 },
                IniError::BadSectionHeader { line: 5 },
                IniError::BadSectionHeader { line: 6 },
            ]
        );
        assert!(errs[0].to_string().contains("`[name]`"), "{}", errs[0]);
        let core = doc.section("core").unwrap();
        assert_eq!(core.get("x").unwrap().value, "1");
        assert!(
            core.get("y").is_none(),
            "an option of [webserver went to [core]"
        );
        let mesos = doc.section("mesos").unwrap();
        assert!(mesos.get("task_cpu").is_none());
        assert_eq!(mesos.get("z").unwrap().value, "3");
    }

    #[test]
    fn syntax_errors_do_not_stop_parsing_and_do_not_echo_text() {
        let (doc, errs) = parse("orphan = 1\n[mesos]\nhunter2secret\ntask_cpu = 2\n= v\n");
        assert_eq!(
            errs,
            vec![
                IniError::MissingSectionHeader { line: 1 },
                IniError::Syntax { line: 3 },
                IniError::Syntax { line: 5 }
            ]
        );
        assert!(!errs.iter().any(|e| e.to_string().contains("hunter2")));
        assert_eq!(
            doc.section("mesos").unwrap().get("task_cpu").unwrap().value,
            "2"
        );
    }

    #[test]
    fn default_section_is_kept_apart_and_may_repeat() {
        let doc = one("[DEFAULT]\nh = x\n[mesos]\na = 1\n[DEFAULT]\ni = y\n");
        assert_eq!(doc.defaults.len(), 2);
        assert_eq!(doc.sections.len(), 1);
    }

    #[test]
    fn crlf_and_bom() {
        let doc = one("\u{feff}[mesos]\r\nmaster = a:1\r\n");
        assert_eq!(
            doc.section("mesos").unwrap().get("master").unwrap().value,
            "a:1"
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any text parses without panicking, and every reported line exists.
            #[test]
            fn never_panics(text in "[\\[\\]=:#; a-zA-Z0-9%()\t\n\r]{0,200}") {
                let (_, errs) = parse(&text);
                let lines = text.lines().count();
                for e in errs {
                    prop_assert!(e.line() >= 1 && e.line() <= lines);
                }
            }

            /// Written options come back with their key, value and line.
            #[test]
            fn options_round_trip(
                opts in proptest::collection::btree_map("[a-z][a-z_]{0,12}", "[a-zA-Z0-9./:@-]{0,20}", 0..12)
            ) {
                let mut text = String::from("[mesos]\n");
                for (k, v) in &opts {
                    text.push_str(&format!("{k} = {v}\n# comment\n"));
                }
                let (doc, errs) = parse(&text);
                prop_assert!(errs.is_empty());
                let section = doc.section("mesos").unwrap();
                prop_assert_eq!(section.options.len(), opts.len());
                for (i, (k, v)) in opts.iter().enumerate() {
                    let o = section.get(k).unwrap();
                    prop_assert_eq!(&o.value, v);
                    prop_assert_eq!(o.line, 2 + 2 * i);
                }
            }
        }
    }

    #[test]
    fn interpolation() {
        let map: HashMap<&str, &str> = [
            ("home", "/opt/%(user)s"),
            ("user", "af"),
            ("loop", "%(loop)s"),
        ]
        .into();
        let look = |k: &str| map.get(k).map(|s| s.to_string());
        assert_eq!(interpolate("100%% sure", &look).unwrap(), "100% sure");
        assert_eq!(interpolate("%(HOME)s/dags", &look).unwrap(), "/opt/af/dags");
        assert_eq!(interpolate("50%", &look), Err(InterpolationError::Syntax));
        assert_eq!(
            interpolate("%(home)", &look),
            Err(InterpolationError::BadReference)
        );
        assert_eq!(
            interpolate("%(nope)s", &look),
            Err(InterpolationError::Missing {
                name: "nope".into()
            })
        );
        assert_eq!(
            interpolate("%(loop)s", &look),
            Err(InterpolationError::TooDeep)
        );
    }
}
