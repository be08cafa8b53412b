//! The line of a sweep file that a checked setting's error is about. Type errors carry their
//! span from the TOML parser; the checks after it (a guidance scale below 1, an unknown
//! sampler, a class outside the model) name the key and value (`cfg = 0.5`, `sampler
//! "ode-rk4"`, `[defaults] classes`, `grid 2`), which this finds in the text.

/// A key assignment of the file: its line (1-based), table header and text.
struct Assignment<'a> {
    line: usize,
    table: &'a str,
    /// Which `[[grid]]` it is in (1-based), if any.
    grid: Option<usize>,
    key: &'a str,
    value: &'a str,
}

fn assignments(text: &str) -> Vec<Assignment<'_>> {
    let (mut table, mut grid, mut grids) = ("", None, 0);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(h) = l.strip_prefix("[[").and_then(|h| h.split_once("]]")) {
            table = h.0.trim();
            grid = (table == "grid").then(|| {
                grids += 1;
                grids
            });
        } else if let Some(h) = l.strip_prefix('[').and_then(|h| h.split_once(']')) {
            (table, grid) = (h.0.trim(), None);
        } else if let Some((key, value)) = l.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(Assignment {
                    line: i + 1,
                    table,
                    grid,
                    key,
                    value: value.trim(),
                });
            }
        }
    }
    out
}

/// Where `msg` names the setting `key`: as `key = value`, `key "value"` or `[table] key`, never
/// as a bare word of the prose.
fn names(msg: &str, key: &str) -> Option<usize> {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    msg.match_indices(key).map(|(i, _)| i).find(|&i| {
        let (before, after) = (&msg[..i], &msg[i + key.len()..]);
        !ident(before.chars().next_back())
            && !ident(after.chars().next())
            && (after.starts_with(" = ") || after.starts_with(" \"") || before.ends_with("] "))
    })
}

/// The line `msg` (an error's whole chain) is about, when it names a key of `text`: the key
/// named first; among its assignments, the one in the grid the message names and whose value
/// holds the value named after the key.
pub fn line_of(text: &str, msg: &str) -> Option<usize> {
    let all = assignments(text);
    let grid = msg
        .split_once("grid ")
        .and_then(|(_, n)| n.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
    let (at, key) = all
        .iter()
        .filter_map(|a| Some((names(msg, a.key)?, a.key)))
        .min()?;
    // The value as the message writes it: `key = 0.5: …` or `key "ode-rk4": …`.
    let rest = msg[at + key.len()..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let value = rest.split([':', ',']).next().unwrap_or("").trim();
    let table = msg
        .split_once('[')
        .and_then(|(_, t)| t.split_once(']'))
        .map(|(t, _)| t);
    let candidates: Vec<&Assignment> = all
        .iter()
        .filter(|a| a.key == key)
        .filter(|a| grid.is_none() || a.grid.is_none() || a.grid == grid)
        .filter(|a| table.is_none_or(|t| t == a.table || a.grid.is_some()))
        .collect();
    candidates
        .iter()
        .find(|a| !value.is_empty() && a.value.contains(value))
        .or(candidates.first())
        .map(|a| a.line)
}

/// `e` in the context of the sweep file `path` (with `text`), and of its line when `e` names
/// a setting.
pub fn in_file(path: &std::path::Path, text: &str, e: anyhow::Error) -> anyhow::Error {
    let at = match line_of(text, &format!("{e:#}")) {
        Some(l) => format!(" (line {l})"),
        None => String::new(),
    };
    e.context(format!("sweep file {}{at}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const TEXT: &str = "name = \"x\"\n[run]\nunit_size = 0\n[defaults]\nclasses = [0, 11]\ncfg = [1.0]\n[[grid]]\ncfg = [1.5, 2.0]\n[[grid]]\nsampler = [\"ode-rk4\"]\ncfg = [0.5]\n";

    #[test]
    fn finds_the_line_an_error_names() {
        for (msg, line) in [
            ("[run] unit_size must be at least 1", Some(3)),
            ("[defaults] classes: class 11 is outside 0..10", Some(5)),
            (
                "grid 2: sampler \"ode-rk4\": expected MODE-METHOD",
                Some(10),
            ),
            (
                "run config x: cfg = 0.5: the guidance scale must be ≥ 1",
                Some(11),
            ),
            ("cfg = 2: …", Some(8)),
            ("nothing named here", None),
            ("the sampler's classes are bare words here", None),
        ] {
            assert_eq!(line_of(TEXT, msg), line, "{msg}");
        }
    }
}
