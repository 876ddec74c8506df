//! One printer for every command: results on stdout; notes, warnings and progress
//! on stderr, governed by -q/-v.

use std::io::Write;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpecFormat {
    Yaml,
    Json,
}

pub struct Printer {
    verbose: u8,
    quiet: bool,
}

impl Printer {
    pub fn new(verbose: u8, quiet: bool) -> Self {
        Printer { verbose, quiet }
    }

    pub fn verbosity(&self) -> u8 {
        self.verbose
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// A note for the user (stderr); hidden by -q.
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            err_line(msg.as_ref());
        }
    }

    /// Detail shown with -v, through `tracing` as every diagnostic (cli/verbose.rs).
    pub fn debug(&self, msg: impl AsRef<str>) {
        tracing::debug!(target: "keelson", "{}", msg.as_ref());
    }

    /// A warning (stderr); hidden by -q, which keeps only errors and results.
    pub fn warn(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            err_line(&format!("Warning: {}", msg.as_ref()));
        }
    }

    /// A result (stdout), always shown.
    pub fn out(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_ref().as_bytes());
        let _ = out.flush();
    }
}

/// A line on stderr. Never panics: a closed pipe (`keelson ... | head`) must not
/// abort a command that holds the cluster lock or is half-way through an apply.
pub fn err_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A left-aligned table with an upper-case header, as kops prints them.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    for row in rows {
        s.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    s
}

/// Objects as multi-document YAML.
pub fn yaml_documents<T: Serialize>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("---\n{}", crate::spec::parse::to_yaml(i)))
        .collect()
}

/// Objects as a Kubernetes-style JSON list.
pub fn json_list<T: Serialize>(items: &[T]) -> String {
    let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
    serde_json::to_string_pretty(&list).expect("specs serialize") + "\n"
}

pub fn spec_output<T: Serialize>(items: &[T], format: SpecFormat) -> String {
    match format {
        SpecFormat::Yaml => yaml_documents(items),
        SpecFormat::Json => json_list(items),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let t = super::table(
            &["NAME", "ROLE"],
            &[
                vec!["a-long-name".into(), "Node".into()],
                vec!["b".into(), "Master".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME         ROLE\na-long-name  Node\nb            Master\n"
        );
    }
}
