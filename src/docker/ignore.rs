//! A `.dockerignore` matcher with the Docker CLI's rules (not `.gitignore`'s).
//!
//! - One pattern per line; blank lines and lines starting with `#` are skipped.
//! - Patterns are cleaned like Go's `filepath.Clean` (a leading `/` and `./` are dropped).
//! - `*` matches any run of characters except `/`, `?` one character except `/`, `[...]` a
//!   character class (`[^...]` / `[!...]` negated), `\` escapes the next character, and `**`
//!   matches any number of directories (zero included).
//! - A pattern matches a path when it matches the whole path, or the leading directories of
//!   the path with as many components as the pattern has (so `docs` excludes `docs/a/b`).
//! - A line starting with `!` re-includes what it matches. The **last** matching line wins.
//!
//! Unlike `.gitignore`, a pattern without `/` is anchored at the context root (`*.pem` does
//! not match `a/b.pem`; write `**/*.pem`).

/// One parsed `.dockerignore` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// The cleaned pattern text (without `!`).
    text: String,
    tokens: Vec<Token>,
    /// Number of `/`-separated components in the pattern.
    components: usize,
    exclusion: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: any single character but `/`.
    AnyChar,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**` (and `**/`): any run of characters including `/`; `**/` may also match nothing.
    DoubleStar {
        slash: bool,
    },
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClassItem {
    Char(char),
    Range(char, char),
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// A `.dockerignore` line that cannot be used, with its line number (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: `{pattern}`: {message}")]
pub struct IgnoreError {
    pub line: usize,
    pub pattern: String,
    pub message: String,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<DockerIgnore, IgnoreError> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let text = clean(body);
            if text.is_empty() {
                continue;
            }
            let tokens = compile(&text).map_err(|message| IgnoreError {
                line: i + 1,
                pattern: line.to_string(),
                message,
            })?;
            let components = text.split('/').count();
            patterns.push(Pattern {
                text,
                tokens,
                components,
                exclusion,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// True when `path` (relative to the context root, `/`-separated) is left out of the
    /// context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let parts: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            let mut hit = matches(&p.tokens, &path);
            if !hit && parts.len() > p.components {
                let parent = parts[..p.components].join("/");
                hit = matches(&p.tokens, &parent);
            }
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// True when some `!` line could re-include a file below an excluded directory, so the
    /// directory must still be walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    #[cfg(test)]
    /// The cleaned patterns, `!` kept, in file order (for messages).
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }
}

/// Go `filepath.Clean`, as far as `.dockerignore` needs it, plus dropping a leading `/`.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(last) if *last != "..") {
                    out.pop();
                } else if !p.starts_with('/') {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out.join("/")
}

fn compile(p: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                // As in the Docker CLI: `**` at the end matches everything; elsewhere (with
                // or without a following `/`) it matches zero or more whole directories.
                tokens.push(Token::DoubleStar {
                    slash: i < chars.len(),
                });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::AnyChar),
            '\\' => {
                i += 1;
                let Some(&next) = chars.get(i) else {
                    return Err("ends with an unescaped `\\`".to_string());
                };
                tokens.push(Token::Literal(next));
            }
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('^') | Some('!'));
                if negated {
                    j += 1;
                }
                let mut items = Vec::new();
                let mut closed = false;
                let mut first = true;
                while j < chars.len() {
                    let mut ch = chars[j];
                    if ch == ']' && !first {
                        closed = true;
                        break;
                    }
                    first = false;
                    if ch == '\\' {
                        j += 1;
                        ch = *chars.get(j).ok_or("unterminated `[`")?;
                    }
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|c| *c != ']')
                    {
                        let mut hi = chars[j + 2];
                        j += 2;
                        if hi == '\\' {
                            j += 1;
                            hi = *chars.get(j).ok_or("unterminated `[`")?;
                        }
                        if hi < ch {
                            return Err(format!("bad range `{ch}-{hi}` in `[...]`"));
                        }
                        items.push(ClassItem::Range(ch, hi));
                    } else {
                        items.push(ClassItem::Char(ch));
                    }
                    j += 1;
                }
                if !closed {
                    return Err("unterminated `[`".to_string());
                }
                tokens.push(Token::Class { negated, items });
                i = j;
            }
            other => tokens.push(Token::Literal(other)),
        }
        i += 1;
    }
    Ok(tokens)
}

fn class_hit(items: &[ClassItem], c: char) -> bool {
    items.iter().any(|it| match *it {
        ClassItem::Char(x) => x == c,
        ClassItem::Range(lo, hi) => lo <= c && c <= hi,
    })
}

/// Whole-string match of `tokens` against `s`, by backtracking (patterns are short).
fn matches(tokens: &[Token], s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    match_from(tokens, &chars)
}

fn match_from(tokens: &[Token], s: &[char]) -> bool {
    let Some((tok, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match tok {
        Token::Literal(c) => s.first() == Some(c) && match_from(rest, &s[1..]),
        Token::AnyChar => s.first().is_some_and(|c| *c != '/') && match_from(rest, &s[1..]),
        Token::Class { negated, items } => {
            s.first()
                .is_some_and(|c| *c != '/' && class_hit(items, *c) != *negated)
                && match_from(rest, &s[1..])
        }
        Token::Star => {
            for n in 0..=s.len() {
                if match_from(rest, &s[n..]) {
                    return true;
                }
                if n < s.len() && s[n] == '/' {
                    break;
                }
            }
            false
        }
        Token::DoubleStar { slash } => {
            if rest.is_empty() && !slash {
                return true;
            }
            // `**/` matches nothing, or anything ending in `/`; a bare `**` anything at all.
            if match_from(rest, s) {
                return true;
            }
            for n in 1..=s.len() {
                if (!slash || s[n - 1] == '/') && match_from(rest, &s[n..]) {
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn comments_blank_lines_and_cleaning() {
        let d = ig("# comment\n\n  /target/  \n./.git\n");
        assert_eq!(d.patterns(), vec!["target".to_string(), ".git".to_string()]);
        assert!(d.is_excluded("target"));
        assert!(d.is_excluded("target/debug/airflow-mesos"));
        assert!(d.is_excluded(".git/HEAD"));
        assert!(!d.is_excluded("src/target.rs"));
        assert!(!d.is_excluded("src/target"));
    }

    #[test]
    fn star_does_not_cross_directories_and_is_anchored() {
        let d = ig("*.pem\n");
        assert!(d.is_excluded("key.pem"));
        assert!(
            !d.is_excluded("certs/key.pem"),
            "unlike gitignore, anchored at the root"
        );
        let d = ig("*/*.pem\n");
        assert!(d.is_excluded("certs/key.pem"));
        assert!(!d.is_excluded("a/b/key.pem"));
    }

    #[test]
    fn double_star_matches_any_depth_including_zero() {
        let d = ig("**/*.pem\n**/.env\n");
        assert!(d.is_excluded("key.pem"));
        assert!(d.is_excluded("a/b/c/key.pem"));
        assert!(d.is_excluded(".env"));
        assert!(d.is_excluded("deploy/.env"));
        assert!(!d.is_excluded("deploy/.envrc"));
        let d = ig("docs/**\n");
        assert!(d.is_excluded("docs/a/b.md"));
        let d = ig("a/**/z\n");
        assert!(d.is_excluded("a/z"));
        assert!(d.is_excluded("a/b/c/z"));
        assert!(!d.is_excluded("a/bz"));
    }

    #[test]
    fn last_matching_line_wins_and_exceptions_reinclude() {
        let d = ig("*.md\n!README.md\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        let d = ig("!README.md\n*.md\n");
        assert!(
            d.is_excluded("README.md"),
            "a later exclusion overrides an earlier exception"
        );
        assert!(d.has_exceptions());
        let d = ig("target\n!target/release/airflow-mesos\n");
        assert!(d.is_excluded("target/debug/x"));
        assert!(!d.is_excluded("target/release/airflow-mesos"));
    }

    #[test]
    fn question_mark_classes_and_escapes() {
        let d = ig("file?.txt\n[a-c]x\n[^z]y\n\\*lit\n");
        assert!(d.is_excluded("file1.txt"));
        assert!(!d.is_excluded("file10.txt"));
        assert!(!d.is_excluded("file/.txt"));
        assert!(d.is_excluded("bx"));
        assert!(!d.is_excluded("dx"));
        assert!(d.is_excluded("ay"));
        assert!(!d.is_excluded("zy"));
        assert!(d.is_excluded("*lit"));
        assert!(!d.is_excluded("xlit"));
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        let e = DockerIgnore::parse("ok\n[abc\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("unterminated"), "{e}");
        let e = DockerIgnore::parse("x\\").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
