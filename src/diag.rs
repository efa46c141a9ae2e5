//! Diagnostics for project files: a message tied to `file:line:column`, rendered with the
//! source line, a caret under the offending text and an optional hint.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::spec::yaml::Pos;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    /// Path as the user should read it: relative to the project directory.
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub message: String,
    /// How many characters the caret underlines (at least 1).
    #[serde(skip)]
    pub width: usize,
    pub hint: Option<String>,
    /// The source line, captured when the diagnostic is made, so rendering needs no IO.
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.col,
            message: message.into(),
            width: 1,
            hint: None,
            source_line: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_width(mut self, width: usize) -> Diagnostic {
        self.width = width.max(1);
        self
    }

    /// Attach the source line and underline the token that starts at the column. The source
    /// may be text no file read made LF (`parse_contract` takes any text), so lines are
    /// counted as YAML counts them.
    pub fn with_source(mut self, source: &str) -> Diagnostic {
        let source = normalize_line_breaks(source);
        if let Some(line) = source.lines().nth(self.line.saturating_sub(1) as usize) {
            if self.width <= 1 {
                let rest: String = line
                    .chars()
                    .skip(self.column.saturating_sub(1) as usize)
                    .collect();
                self.width = token_width(&rest);
            }
            self.source_line = Some(line.to_string());
        }
        self
    }

    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// `text` with every line break made LF. YAML counts CRLF, a lone CR and LF each as one line
/// break (YAML 1.2 §5.4; yaml-rust2 reports positions that way) while DataFusion's SQL parser
/// and `str::lines` know only LF and CRLF, so a file saved with CR endings would get positions
/// that disagree with each other and with the line `with_source` shows.
pub fn normalize_line_breaks(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Reads a project file (YAML or SQL) as UTF-8 with its line breaks made LF.
pub fn read_source(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let normalized = match normalize_line_breaks(&text) {
        Cow::Owned(normalized) => Some(normalized),
        Cow::Borrowed(_) => None,
    };
    Ok(normalized.unwrap_or(text))
}

/// The length of the token at the start of `rest`: a quoted string, a word, or one character.
fn token_width(rest: &str) -> usize {
    let mut chars = rest.chars();
    match chars.next() {
        None => 1,
        Some(q @ ('"' | '\'')) => {
            let inner = chars.take_while(|c| *c != q).count();
            (inner + 2).min(rest.chars().count())
        }
        Some(c) if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '/' => rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '@' | '+'))
            .count(),
        Some(_) => 1,
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$}--> {}", "", self.location())?;
        if let Some(line) = &self.source_line {
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, line)?;
            let pad: String = line
                .chars()
                .take(self.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{:gutter$} | {}{}", "", pad, "^".repeat(self.width))?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f)?;
            writeln!(f, "hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest candidate by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_line_caret_and_hint() {
        let source = "tasks:\n  - id: a\n    depends_on: [bb]\n";
        let d = Diagnostic::new(
            Path::new("pipelines/x.yaml"),
            Pos { line: 3, col: 18 },
            "unknown task `bb`",
        )
        .with_source(source)
        .with_hint("did you mean `b`?");
        assert_eq!(
            d.to_string(),
            "error: unknown task `bb`\n --> pipelines/x.yaml:3:18\n  |\n3 |     depends_on: [bb]\n  |                  ^^\n\nhint: did you mean `b`?\n"
        );
    }

    #[test]
    fn line_breaks_become_lf_whether_crlf_a_lone_cr_or_lf() {
        let lines: Vec<String> = normalize_line_breaks("a\r\nb\rc\nd")
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(lines, ["a", "b", "c", "d"]);
        let lf_only = normalize_line_breaks("a\n\nb\n");
        assert!(
            matches!(lf_only, Cow::Borrowed(_)),
            "LF-only text is not copied"
        );
        assert_eq!(lf_only.lines().collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(normalize_line_breaks("").lines().count(), 0);
        assert_eq!(normalize_line_breaks("a\r\nb\rc\n"), "a\nb\nc\n");
    }

    #[test]
    fn a_bare_cr_file_shows_the_line_yaml_reported() {
        let d = Diagnostic::new(Path::new("x.yaml"), Pos { line: 2, col: 1 }, "bad")
            .with_source("name: a\rretires: 3\r");
        assert_eq!(d.source_line.as_deref(), Some("retires: 3"));
        assert_eq!(d.width, 7);
    }

    #[test]
    fn suggestions_only_for_close_names() {
        assert_eq!(
            did_you_mean("retires", ["retries", "timeout"]),
            Some("retries")
        );
        assert_eq!(did_you_mean("zzz", ["retries", "timeout"]), None);
    }
}
