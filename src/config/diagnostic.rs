//! Located config errors: each problem is a byte range of the file plus a message, printed
//! as `FILE:LINE:COL: message` followed by the offending line with the range marked.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};

/// One problem at one place in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the file; `None` for problems with the file as a whole.
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            message: message.into(),
        }
    }

    pub fn whole_file(message: impl Into<String>) -> Self {
        Self {
            span: None,
            message: message.into(),
        }
    }
}

/// Every problem found in one config file, with the text needed to show where.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    source_text: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    pub fn new(file: &Path, source_text: &str, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        diagnostics.dedup();
        Self {
            file: file.to_path_buf(),
            source_text: source_text.to_owned(),
            diagnostics,
        }
    }

    /// A problem that is about the file, not a place in it (unreadable, empty, …).
    pub fn file_level(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, "", vec![Diagnostic::whole_file(message)])
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source_text, offset)
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = clamp_to_char_boundary(text, offset);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

fn clamp_to_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        let renderer = Renderer::plain();
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &d.span {
                None => write!(f, "{file}: {}", d.message)?,
                Some(span) => {
                    let start = clamp_to_char_boundary(&self.source_text, span.start);
                    let (line, col) = self.line_col(start);
                    writeln!(f, "{file}:{line}:{col}: {}", d.message)?;
                    // Show only the first line of a multi-line span: that is where the
                    // problem starts, and a whole table would bury it.
                    let line_end = self.source_text[start..]
                        .find('\n')
                        .map_or(self.source_text.len(), |i| start + i);
                    let end =
                        clamp_to_char_boundary(&self.source_text, span.end).clamp(start, line_end);
                    let report = [Level::ERROR.no_name().primary_title("").element(
                        Snippet::source(self.source_text.as_str())
                            .annotation(AnnotationKind::Primary.span(start..end)),
                    )];
                    let rendered = renderer.render(&report);
                    // The renderer's title line is empty (ours is above); drop it.
                    let body = rendered.trim_start_matches(['\n', ':']);
                    write!(f, "{}", body.trim_start_matches('\n').trim_end())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nnäme = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // `=` after the two-byte ä: byte 12, character column 6.
        assert_eq!(line_col(text, 12), (2, 6));
    }
}
