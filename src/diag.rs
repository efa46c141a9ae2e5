//! Diagnostics for project files: a message tied to `file:line:column`, rendered with the
//! source line, a caret under the offending text and an optional hint.

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

    /// Attach the source line and underline the token that starts at the column.
    pub fn with_source(mut self, source: &str) -> Diagnostic {
        if let Some(line) = source_lines(source).nth(self.line.saturating_sub(1) as usize) {
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

/// The lines of `text` as YAML counts them: CRLF, a lone CR and LF each end a line (YAML 1.2
/// §5.4, and yaml-rust2 reports positions that way), where `str::lines` knows only LF and CRLF.
pub fn source_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(i) => {
                let skip = if text[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[i + skip..]).filter(|r| !r.is_empty());
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text).filter(|t| !t.is_empty())
            }
        }
    })
}

/// A project file's text with every line break made LF. YAML already reads a lone CR as a line
/// break but DataFusion's SQL parser counts lines by LF only, so a file saved with CR or CRLF
/// endings would get positions that disagree between the two (and with the line `with_source`
/// shows).
pub fn normalize_line_breaks(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Reads a project file (YAML or SQL) as UTF-8 with its line breaks made LF.
pub fn read_source(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(normalize_line_breaks)
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
    fn source_lines_end_at_crlf_a_lone_cr_or_lf() {
        let lines: Vec<&str> = source_lines("a\r\nb\rc\nd").collect();
        assert_eq!(lines, ["a", "b", "c", "d"]);
        assert_eq!(source_lines("a\n\nb\n").collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(source_lines("").count(), 0);
        assert_eq!(
            normalize_line_breaks("a\r\nb\rc\n".into()),
            "a\nb\nc\n".to_string()
        );
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
