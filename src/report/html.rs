//! `index.html`: an offline page with the table of every run config, each figure (its PNG, a
//! link to its SVG) and the sample grids.

use std::fmt::Write as _;

use super::data::{label, Key, Row};
use super::figures::Figure;
use super::tables::cell;

/// The page's head and title: everything up to the first paragraph.
const HEAD: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sitdiv report</title>\n<style>body{font-family:sans-serif;margin:24px;max-width:1500px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}figure{margin:18px 0}.grids{display:flex;flex-wrap:wrap;gap:12px}.grids figure{margin:0}</style></head>\n<body>\n<h1>sitdiv report</h1>\n";

/// The page's end. For headless checks, the script counts the images that loaded.
const TAIL: &str = "<script>window.addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>\n</body></html>\n";

/// Escapes `&`, `<` and `>` for HTML text (quotes are left as they are).
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The whole page: the table of `columns` for `rows`, the `figures`, then the sample grids of the
/// run configs `grid_ids`.
pub(super) fn index_html(
    rows: &[Row],
    columns: &[Key],
    figures: &[Figure],
    grid_ids: &[String],
) -> String {
    let mut html = String::from(HEAD);
    let _ = writeln!(
        html,
        "<p>{} run configs. Values with their bootstrap intervals [lo, hi]. Data: <a href=\"results.csv\">results.csv</a>, <a href=\"agreement.csv\">agreement.csv</a>, <a href=\"summary.md\">summary.md</a>.</p>",
        rows.len()
    );
    write_table(&mut html, rows, columns);
    write_figures(&mut html, figures);
    write_grids(&mut html, grid_ids);
    html.push_str(TAIL);
    html
}

/// The results table: a row per run config, a column per metric of `columns`.
fn write_table(html: &mut String, rows: &[Row], columns: &[Key]) {
    let _ = writeln!(
        html,
        "<table><tr><th>config</th>{}</tr>",
        columns
            .iter()
            .map(|k| format!("<th>{}</th>", html_escape(&label(k))))
            .collect::<String>()
    );
    for r in rows {
        let _ = writeln!(
            html,
            "<tr><td>{}</td>{}</tr>",
            html_escape(&r.id),
            columns
                .iter()
                .map(|k| format!("<td>{}</td>", cell(r, k)))
                .collect::<String>()
        );
    }
    html.push_str("</table>\n");
}

/// Each figure's PNG with its caption and a link to its SVG.
fn write_figures(html: &mut String, figures: &[Figure]) {
    for Figure { stem, caption } in figures {
        let _ = writeln!(
            html,
            "<figure><img src=\"plots/{stem}.png\" alt=\"{0}\"><figcaption>{0} (<a href=\"plots/{stem}.svg\">SVG</a>)</figcaption></figure>",
            html_escape(caption)
        );
    }
}

/// The sample grids side by side, under a heading; nothing when there are none.
fn write_grids(html: &mut String, grid_ids: &[String]) {
    if grid_ids.is_empty() {
        return;
    }
    html.push_str("<h2>Samples (rows: classes)</h2>\n<div class=\"grids\">\n");
    for id in grid_ids {
        let _ = writeln!(
            html,
            "<figure><img src=\"grids/{0}.png\" alt=\"{0}\"><figcaption>{0}</figcaption></figure>",
            html_escape(id)
        );
    }
    html.push_str("</div>\n");
}
