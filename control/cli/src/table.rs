//! Column tables and ages, as kubectl prints them.

use std::time::{Duration, SystemTime};

/// A table whose columns are as wide as their widest cell plus three spaces (kubectl's
/// tabwriter settings), so output lines up and splits on whitespace.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

const GAP: usize = 3;

impl Table {
    pub fn new<S: AsRef<str>>(header: &[S]) -> Table {
        Table {
            header: header.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The width of each column, header included.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }

    pub fn render(&self) -> String {
        let widths = self.widths();
        std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|row| line(row, &widths))
            .collect()
    }

    /// The rows without the header, padded to at least `widths` (watch output continues a
    /// table printed before).
    pub fn render_rows(&self, widths: &[usize]) -> String {
        let own = self.widths();
        let widths: Vec<usize> = own
            .iter()
            .zip(widths.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| *a.max(b))
            .collect();
        self.rows.iter().map(|row| line(row, &widths)).collect()
    }
}

fn line(row: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in row.iter().enumerate() {
        out.push_str(cell);
        if i + 1 < row.len() {
            let pad = widths.get(i).copied().unwrap_or(0) + GAP - cell.chars().count();
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// How long ago an RFC 3339 timestamp was, kubectl-style (`5s`, `3m`, `2h`, `4d`, `2y`).
pub fn age(timestamp: Option<&str>, now: SystemTime) -> String {
    let Some(then) = timestamp.and_then(|t| humantime::parse_rfc3339_weak(t).ok()) else {
        return "<unknown>".into();
    };
    match now.duration_since(then) {
        Ok(elapsed) => short_duration(elapsed),
        // A clock a little behind the server's: not worth alarming anyone.
        Err(e) if e.duration() < Duration::from_secs(2) => "0s".into(),
        Err(_) => "<invalid>".into(),
    }
}

pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        86_400..31_536_000 => format!("{}d", s / 86_400),
        _ => format!("{}y", s / 31_536_000),
    }
}

/// Now, as the API writes times (RFC 3339, UTC, whole seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three() {
        let mut t = Table::new(&["NAME", "READY", "STATUS"]);
        t.push(vec!["web-7d9f-x2".into(), "1/1".into(), "Running".into()]);
        t.push(vec!["db".into(), "0/1".into(), "".into()]);
        assert_eq!(
            t.render(),
            "NAME          READY   STATUS\n\
             web-7d9f-x2   1/1     Running\n\
             db            0/1\n"
        );
        // A row watched later keeps the columns of the table printed first.
        let mut later = Table::new(&["NAME", "READY", "STATUS"]);
        later.push(vec!["db".into(), "1/1".into(), "Running".into()]);
        assert_eq!(
            later.render_rows(&t.widths()),
            "db            1/1     Running\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        let then = humantime::parse_rfc3339("2026-11-22T10:00:00Z").unwrap();
        let at = |secs| {
            age(
                Some("2026-11-22T10:00:00Z"),
                then + Duration::from_secs(secs),
            )
        };
        assert_eq!(at(5), "5s");
        assert_eq!(at(59), "59s");
        assert_eq!(at(3 * 60 + 20), "3m");
        assert_eq!(at(2 * 3600 + 5), "2h");
        assert_eq!(at(4 * 86_400 + 7200), "4d");
        assert_eq!(at(800 * 86_400), "2y");
        assert_eq!(age(None, then), "<unknown>");
        assert_eq!(age(Some("yesterday"), then), "<unknown>");
        assert_eq!(age(Some("2026-11-22T10:00:01Z"), then), "0s");
        assert_eq!(age(Some("2026-11-23T10:00:00Z"), then), "<invalid>");
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let now = now_rfc3339();
        assert!(humantime::parse_rfc3339(&now).is_ok(), "{now}");
        assert!(now.ends_with('Z') && now.len() == 20, "{now}");
    }
}
