//! What the loader fuzz targets share: a project directory of this process's own, written
//! afresh for each input, and the check that every diagnostic points inside the file it names.

use std::path::{Path, PathBuf};

use nightjar::diag::Diagnostic;

/// A scratch project directory for this fuzzing process (libFuzzer runs one input at a time
/// per process; `-fork`/`-jobs` workers get their own by pid).
pub fn scratch_project() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nightjar-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["pipelines", "contracts", "features"] {
        std::fs::create_dir_all(dir.join(sub)).expect("scratch project");
    }
    dir
}

pub fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    std::fs::write(dir.join(rel), bytes).expect("write scratch file");
}

/// Every diagnostic about one of `files` (relative path, bytes) must name a line that exists
/// (line 0 stands for the file as a whole), and must render without panicking.
pub fn assert_positions_inside(diags: &[Diagnostic], files: &[(&str, &[u8])]) {
    for d in diags {
        let rendered = d.to_string();
        assert!(rendered.contains(&d.message), "{rendered}");
        let Some((_, bytes)) = files.iter().find(|(rel, _)| Path::new(rel) == d.file) else {
            continue;
        };
        // Lines as YAML counts them: CRLF, a lone CR and LF each end one.
        let text = String::from_utf8_lossy(bytes)
            .replace("\r\n", "\n")
            .replace('\r', "\n");
        // A position just past the last line is where an unexpected end of file is reported.
        let lines = text.lines().count() as u32 + 1;
        assert!(
            d.line <= lines,
            "{}: line {} past the end ({lines} lines): {}",
            d.file.display(),
            d.line,
            d.message
        );
    }
}
