//! `report.html`: one self-contained page (no scripts, no external files) with inline SVG
//! plots: per-group test AUC with bootstrap intervals, per-group ROC curves, training curves.

use std::fmt::Write as _;

use crate::report::FinalReport;

const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const W: f64 = 360.0;
const H: f64 = 240.0;
const PAD: f64 = 40.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
    /// Tick labels on the x axis: none (bars), integers (epochs) or fractions.
    xticks: Ticks,
}

#[derive(Clone, Copy, PartialEq)]
enum Ticks {
    None,
    Int,
    Frac,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        PAD + (x - self.x.0) / (self.x.1 - self.x.0).max(1e-12) * (W - 1.5 * PAD)
    }
    fn py(&self, y: f64) -> f64 {
        H - PAD + -(y - self.y.0) / (self.y.1 - self.y.0).max(1e-12) * (H - 1.6 * PAD)
    }
    fn axes(&self, s: &mut String, title: &str, xlabel: &str, ylabel: &str) {
        let _ = write!(
            s,
            r##"<text x="{}" y="16" font-size="13" text-anchor="middle" font-weight="bold">{}</text><line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{PAD}" y1="{t}" x2="{PAD}" y2="{b}" stroke="#333"/><text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text><text x="12" y="{}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {})">{}</text>"##,
            W / 2.0,
            esc(title),
            W / 2.0,
            H - 6.0,
            esc(xlabel),
            H / 2.0,
            H / 2.0,
            esc(ylabel),
            b = H - PAD,
            r = W - PAD / 2.0,
            t = 0.6 * PAD,
        );
        for k in 0..=4 {
            let v = self.y.0 + (self.y.1 - self.y.0) * k as f64 / 4.0;
            let _ = write!(
                s,
                r##"<text x="{}" y="{}" font-size="9" text-anchor="end">{}</text><line x1="{PAD}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/>"##,
                PAD - 3.0,
                self.py(v) + 3.0,
                fmt_tick(v),
                W - PAD / 2.0,
                y = self.py(v)
            );
            if self.xticks == Ticks::Frac {
                let u = self.x.0 + (self.x.1 - self.x.0) * k as f64 / 4.0;
                let _ = write!(s, r##"<text x="{}" y="{}" font-size="9" text-anchor="middle">{}</text>"##, self.px(u), H - PAD + 12.0, fmt_tick(u));
            }
        }
        if self.xticks == Ticks::Int {
            let (a, b) = (self.x.0.ceil() as i64, self.x.1.floor() as i64);
            let step = ((b - a) / 8).max(1);
            for u in (a..=b).step_by(step as usize) {
                let _ = write!(s, r##"<text x="{}" y="{}" font-size="9" text-anchor="middle">{u}</text>"##, self.px(u as f64), H - PAD + 12.0);
            }
        }
    }
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn svg_open() -> String {
    format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"#)
}

fn legend(s: &mut String, names: &[String], bottom: bool) {
    let top = if bottom { H - PAD - 8.0 - 13.0 * names.len() as f64 } else { 0.6 * PAD + 4.0 };
    for (i, n) in names.iter().enumerate() {
        let y = top + 13.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="3" fill="{}"/><text x="{}" y="{}" font-size="10">{}</text>"#,
            W - 118.0,
            y,
            COLORS[i % COLORS.len()],
            W - 104.0,
            y + 4.0,
            esc(n)
        );
    }
}

/// A line chart of named series of (x, y) points.
fn lines(title: &str, xlabel: &str, ylabel: &str, series: &[(String, Vec<(f64, f64)>)], frame: Frame, diagonal: bool) -> String {
    let mut s = svg_open();
    frame.axes(&mut s, title, xlabel, ylabel);
    if diagonal {
        let _ = write!(s, r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#aaa" stroke-dasharray="4 3"/>"##, frame.px(0.0), frame.py(0.0), frame.px(1.0), frame.py(1.0));
    }
    for (i, (_, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", frame.px(*x), frame.py(*y))).collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{}" stroke-width="1.6" points="{}"/>"#, COLORS[i % COLORS.len()], path.join(" "));
        if pts.len() < 40 {
            for (x, y) in pts {
                let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{}"/>"#, frame.px(*x), frame.py(*y), COLORS[i % COLORS.len()]);
            }
        }
    }
    // ROC curves fill the upper left, so their legend goes to the lower right.
    legend(&mut s, &series.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), diagonal);
    s.push_str("</svg>");
    s
}

/// A bar: its name, its value and its [low, high] interval.
type Bar = (String, Option<f64>, Option<(f64, f64)>);

/// Bars with optional [low, high] whiskers and a dashed reference line.
fn bars(title: &str, items: &[Bar], reference: Option<f64>) -> String {
    let mut s = svg_open();
    let lo = items.iter().filter_map(|(_, v, ci)| ci.map(|c| c.0).or(*v)).fold(1.0f64, f64::min);
    let frame = Frame { x: (0.0, items.len().max(1) as f64), y: ((lo - 0.05).clamp(0.0, 0.5), 1.0), xticks: Ticks::None };
    frame.axes(&mut s, title, "", "AUC");
    for (i, (name, v, ci)) in items.iter().enumerate() {
        let x0 = frame.px(i as f64 + 0.2);
        let x1 = frame.px(i as f64 + 0.8);
        if let Some(v) = v {
            let _ = write!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" opacity="0.8"><title>{}: {v:.4}</title></rect>"#,
                frame.py(*v),
                x1 - x0,
                (frame.py(frame.y.0) - frame.py(*v)).max(0.0),
                COLORS[i % COLORS.len()],
                esc(name)
            );
        }
        if let Some((l, h)) = ci {
            let xm = (x0 + x1) / 2.0;
            let _ = write!(
                s,
                r##"<line x1="{xm:.1}" y1="{:.1}" x2="{xm:.1}" y2="{:.1}" stroke="#000"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000"/>"##,
                frame.py(*l),
                frame.py(*h),
                xm - 5.0,
                frame.py(*l),
                xm + 5.0,
                frame.py(*l),
                xm - 5.0,
                frame.py(*h),
                xm + 5.0,
                frame.py(*h)
            );
        }
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#, (x0 + x1) / 2.0, H - PAD + 24.0, esc(name));
    }
    if let Some(r) = reference {
        let _ = write!(
            s,
            r##"<line x1="{PAD}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#555" stroke-dasharray="5 3"><title>overall AUC {r:.4}</title></line>"##,
            W - PAD / 2.0,
            y = frame.py(r)
        );
    }
    s.push_str("</svg>");
    s
}

/// The whole page.
pub fn render(r: &FinalReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fairvlm report: {m}</title><style>body{{font-family:sans-serif;max-width:1180px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}td:first-child{{text-align:left}}.row{{display:flex;flex-wrap:wrap;gap:12px}}</style></head><body><h1>fairvlm: {m}</h1>"#,
        m = esc(&r.method)
    );
    let _ = write!(
        s,
        "<p>Test split, {} samples; epoch {} of {} selected on {:?} AUC. Values x100; intervals are bootstrap {}-replicate percentiles.</p>",
        r.samples[2], r.best_epoch, r.config.optim.epochs, r.selected_on, r.config.eval.bootstrap
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", 100.0 * v));
    s.push_str("<table><tr><th>attribute</th><th>DPD</th><th>DEOdds</th><th>AUC</th><th>ES-AUC</th><th>group AUCs</th></tr>");
    for (name, a) in &r.test.attributes {
        let groups: Vec<String> = a.groups.iter().map(|(g, m)| format!("{} {}", esc(g), f(m.auc))).collect();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            f(a.dpd),
            f(a.eod),
            f(r.test.overall.auc),
            f(a.es_auc),
            groups.join(", ")
        );
    }
    s.push_str("</table><h2>Group AUC (test) with intervals</h2><div class=\"row\">");
    for (name, a) in &r.test.attributes {
        let items: Vec<Bar> = a.groups.iter().map(|(g, m)| (g.clone(), m.auc, m.ci.as_ref().and_then(|c| c.get("auc")).map(|c| (c.low, c.high)))).collect();
        s.push_str(&bars(&format!("{name}: ES-AUC {}", f(a.es_auc)), &items, r.test.overall.auc));
    }
    s.push_str("</div><h2>ROC curves per group (test)</h2><div class=\"row\">");
    for (name, groups) in &r.roc {
        let series: Vec<(String, Vec<(f64, f64)>)> = groups.iter().map(|(g, c)| (g.clone(), c.fpr.iter().copied().zip(c.tpr.iter().copied()).collect())).collect();
        let title = if name.is_empty() { "all".to_string() } else { name.clone() };
        s.push_str(&lines(&title, "false positive rate", "true positive rate", &series, Frame { x: (0.0, 1.0), y: (0.0, 1.0), xticks: Ticks::Frac }, true));
    }
    s.push_str("</div><h2>Training</h2><div class=\"row\">");
    let epochs = r.history.len().max(1) as f64;
    let ex = |get: &dyn Fn(&crate::log::EpochLog) -> Option<f64>| -> Vec<(f64, f64)> { r.history.iter().filter_map(|l| get(l).map(|v| (l.epoch as f64, v))).collect() };
    let loss = vec![("loss".to_string(), ex(&|l| Some(l.loss))), ("CLIP loss".to_string(), ex(&|l| Some(l.clip_loss)))];
    let (lmin, lmax) = r.history.iter().flat_map(|l| [l.loss, l.clip_loss]).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let lrange = if lmin.is_finite() { (lmin * 0.95, lmax * 1.05 + 1e-9) } else { (0.0, 1.0) };
    s.push_str(&lines("training loss", "epoch", "loss", &loss, Frame { x: (1.0, epochs.max(2.0)), y: lrange, xticks: Ticks::Int }, false));
    let auc = vec![("validation AUC".to_string(), ex(&|l| l.validation.auc)), ("test AUC".to_string(), ex(&|l| l.test.auc))];
    // The y axis starts at 0.4 (0.3 for ES-AUC) unless a value is lower.
    let floor = |series: &[(String, Vec<(f64, f64)>)], at: f64| series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(at, f64::min).max(0.0);
    s.push_str(&lines("AUC by epoch", "epoch", "AUC", &auc, Frame { x: (1.0, epochs.max(2.0)), y: (floor(&auc, 0.4), 1.0), xticks: Ticks::Int }, false));
    let es: Vec<(String, Vec<(f64, f64)>)> = r
        .history
        .first()
        .map(|h| h.validation.attributes.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let pts = ex(&|l| l.validation.attributes.get(&a).and_then(|m| m.es_auc));
            (a, pts)
        })
        .collect();
    s.push_str(&lines("validation ES-AUC by epoch", "epoch", "ES-AUC", &es, Frame { x: (1.0, epochs.max(2.0)), y: (floor(&es, 0.3), 1.0), xticks: Ticks::Int }, false));
    s.push_str("</div></body></html>\n");
    s
}
