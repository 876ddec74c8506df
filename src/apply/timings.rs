//! `update cluster --yes --timings`: a self-contained HTML report of an apply,
//! after cargo's `--timings`. One bar per resource over time, in segments
//! (waiting for a slot, in flight, waiting to retry, pending at AWS), the
//! critical path highlighted, and tables of the slowest steps and of the
//! retries by AWS error code. Built from the executor's [`Event`]s, stamped as
//! they arrive ([`Recorder`]); rendering is pure ([`html`]). No network: the
//! styles and the script that draws the bars (SVG) are inline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Event;
use super::critical::{CriticalPath, human};

/// The executor's events, each with the time since the apply started.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<(Duration, Event)>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: Instant::now(),
            events: Mutex::default(),
        }
    }
}

impl Recorder {
    pub fn record(&self, e: &Event) {
        let at = self.start.elapsed();
        self.events.lock().unwrap().push((at, e.clone()));
    }

    pub fn events(&self) -> Vec<(Duration, Event)> {
        self.events.lock().unwrap().clone()
    }
}

/// What a stretch of a bar was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Ready, waiting for one of the slots (or a pause for throttling).
    Waiting,
    /// A request (or a kind's own follow-ups) in flight.
    InFlight,
    /// Failed with something worth another try; waiting to retry.
    Retried,
    /// Created; AWS has it pending (a NAT gateway), and the step waits.
    Pending,
}

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub phase: Phase,
    pub start: f64,
    pub end: f64,
}

/// One resource's bar.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub address: String,
    pub action: String,
    pub segments: Vec<Segment>,
    pub attempts: u32,
    /// It never finished (failed, or not attempted past its start).
    pub unfinished: bool,
    pub critical: bool,
}

impl Bar {
    fn start(&self) -> f64 {
        self.segments.first().map_or(0.0, |s| s.start)
    }
    fn end(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.end)
    }
}

/// The bars of a run, in the order their steps became ready.
pub fn bars(events: &[(Duration, Event)], critical: &CriticalPath) -> Vec<Bar> {
    let end_of_run = events.last().map_or(0.0, |(t, _)| t.as_secs_f64());
    let on_path: Vec<String> = critical
        .chain
        .iter()
        .map(|l| l.address.to_string())
        .collect();
    let mut order: Vec<String> = Vec::new();
    let mut open: BTreeMap<String, (Phase, f64)> = BTreeMap::new();
    let mut out: BTreeMap<String, Bar> = BTreeMap::new();
    let mut bar = |out: &mut BTreeMap<String, Bar>, address: &str| {
        if !out.contains_key(address) {
            order.push(address.to_string());
            out.insert(
                address.to_string(),
                Bar {
                    address: address.to_string(),
                    action: String::new(),
                    segments: Vec::new(),
                    attempts: 0,
                    unfinished: true,
                    critical: on_path.iter().any(|a| a == address),
                },
            );
        }
    };
    for (at, e) in events {
        let t = at.as_secs_f64();
        let (address, next) = match e {
            Event::Ready { address } => (address, Some(Phase::Waiting)),
            Event::Started {
                address,
                action,
                attempt,
            } => {
                bar(&mut out, address);
                let b = out.get_mut(address).expect("inserted");
                b.action = serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                b.attempts = b.attempts.max(*attempt);
                (address, Some(Phase::InFlight))
            }
            Event::Retrying { address, .. } => (address, Some(Phase::Retried)),
            Event::Pending { address, .. } => (address, Some(Phase::Pending)),
            Event::Done { address, .. } => {
                bar(&mut out, address);
                out.get_mut(address).expect("inserted").unfinished = false;
                (address, None)
            }
        };
        bar(&mut out, address);
        let b = out.get_mut(address).expect("inserted");
        if let Some((phase, since)) = open.remove(address) {
            b.segments.push(Segment {
                phase,
                start: since,
                end: t,
            });
        }
        if let Some(p) = next {
            open.insert(address.clone(), (p, t));
        }
    }
    for (address, (phase, since)) in open {
        bar(&mut out, &address);
        out.get_mut(&address)
            .expect("inserted")
            .segments
            .push(Segment {
                phase,
                start: since,
                end: end_of_run,
            });
    }
    order.into_iter().filter_map(|a| out.remove(&a)).collect()
}

/// The whole report. `title` names the cluster; `critical` is the plan's
/// critical path (the lower bound the run is measured against).
pub fn html(title: &str, events: &[(Duration, Event)], critical: &CriticalPath) -> String {
    let bars = bars(events, critical);
    let wall = bars.iter().map(Bar::end).fold(0.0, f64::max);
    let bound = critical.total.as_secs_f64();
    let ratio = if bound > 0.0 { wall / bound } else { 0.0 };

    // Retries by AWS error code (the message's first words when AWS gave none).
    let mut retries: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for (_, e) in events {
        if let Event::Retrying {
            address,
            error,
            code,
            ..
        } = e
        {
            let code = code
                .clone()
                .unwrap_or_else(|| error.chars().take(40).collect::<String>());
            let r = retries.entry(code).or_default();
            r.0 += 1;
            if !r.1.contains(address) {
                r.1.push(address.clone());
            }
        }
    }
    let mut slowest: Vec<&Bar> = bars.iter().collect();
    slowest.sort_by(|a, b| (b.end() - b.start()).total_cmp(&(a.end() - a.start())));
    slowest.truncate(15);

    let data = serde_json::json!({
        "wall": wall,
        "critical": bound,
        "bars": bars,
    });
    // Safe inside <script>: no `</` can close it.
    let data = data.to_string().replace("</", "<\\/");

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>keelson apply timings: {title}</title>
<style>
body {{ font: 13px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.1em; margin-top: 1.5em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; text-align: left; border-bottom: 1px solid #ddd; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.key span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }}
.waiting {{ fill: #d0d0d0; background: #d0d0d0; }} .in_flight {{ fill: #3b7dd8; background: #3b7dd8; }}
.retried {{ fill: #e8a33d; background: #e8a33d; }} .pending {{ fill: #9b6fd1; background: #9b6fd1; }}
text {{ font: 11px system-ui, sans-serif; fill: #222; }} text.critical {{ font-weight: bold; fill: #b00; }}
rect.path {{ fill: none; stroke: #b00; stroke-width: 1.5; }}
</style></head><body>
<h1>keelson apply: {title}</h1>
<p>Wall time <b id="wall">{wall_h}</b>; critical path <b id="critical">{bound_h}</b>{ratio_text}.
{steps} steps; the critical path is outlined in red: {path}.</p>
<p class="key"><span class="waiting"></span>waiting for a slot<span class="in_flight"></span>in flight<span class="retried"></span>waiting to retry<span class="pending"></span>pending at AWS</p>
<div id="chart"><noscript>The chart needs JavaScript; the tables below do not.</noscript></div>
"#,
        title = escape(title),
        wall_h = human(Duration::from_secs_f64(wall.max(0.0))),
        bound_h = human(critical.total),
        ratio_text = if ratio > 0.0 {
            format!(" (<b id=\"ratio\">{ratio:.2}</b>&times;)")
        } else {
            String::new()
        },
        steps = bars.len(),
        path = escape(&critical.describe()),
    );
    s.push_str("<h2>Slowest steps</h2>\n<table id=\"slowest\"><tr><th>resource</th><th>action</th><th>time</th><th>attempts</th><th>pending at AWS</th></tr>\n");
    for b in &slowest {
        let pending: f64 = b
            .segments
            .iter()
            .filter(|g| g.phase == Phase::Pending)
            .map(|g| g.end - g.start)
            .sum();
        let _ = writeln!(
            s,
            "<tr><td>{}{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&b.address),
            if b.unfinished { " (unfinished)" } else { "" },
            escape(&b.action),
            human(Duration::from_secs_f64(b.end() - b.start())),
            b.attempts,
            if pending > 0.0 {
                human(Duration::from_secs_f64(pending))
            } else {
                String::new()
            }
        );
    }
    s.push_str("</table>\n<h2>Retries by error code</h2>\n");
    if retries.is_empty() {
        s.push_str("<p id=\"retries\">None.</p>\n");
    } else {
        s.push_str(
            "<table id=\"retries\"><tr><th>code</th><th>retries</th><th>resources</th></tr>\n",
        );
        for (code, (n, who)) in &retries {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td class=\"n\">{n}</td><td>{}</td></tr>",
                escape(code),
                escape(&who.join(", "))
            );
        }
        s.push_str("</table>\n");
    }
    let _ = write!(
        s,
        r##"<script type="application/json" id="data">{data}</script>
<script>
(function () {{
  var d = JSON.parse(document.getElementById("data").textContent);
  var ns = "http://www.w3.org/2000/svg", row = 16, label = 360, width = 900;
  var span = Math.max(d.wall, d.critical, 0.001), scale = width / span;
  var svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", label + width + 20);
  svg.setAttribute("height", (d.bars.length + 2) * row);
  function el(name, attrs, parent) {{
    var e = document.createElementNS(ns, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    (parent || svg).appendChild(e);
    return e;
  }}
  for (var t = 0; t <= span; t += Math.max(1, Math.ceil(span / 10))) {{
    el("line", {{x1: label + t * scale, x2: label + t * scale, y1: 0, y2: (d.bars.length + 1) * row, stroke: "#eee"}});
    el("text", {{x: label + t * scale, y: (d.bars.length + 1.8) * row}}).textContent = t + "s";
  }}
  d.bars.forEach(function (b, i) {{
    var y = i * row + 2;
    var g = el("g", {{"class": "bar" + (b.critical ? " critical" : ""), "data-address": b.address}});
    var name = el("text", {{x: 0, y: y + 11, "class": b.critical ? "critical" : ""}}, g);
    name.textContent = b.address + (b.unfinished ? " (unfinished)" : "");
    b.segments.forEach(function (s) {{
      var r = el("rect", {{x: label + s.start * scale, y: y, height: row - 4,
        width: Math.max(1, (s.end - s.start) * scale), "class": "segment " + s.phase}}, g);
      el("title", {{}}, r).textContent = b.address + ": " + s.phase.replace("_", " ") + " " + (s.end - s.start).toFixed(2) + "s";
    }});
    if (b.critical && b.segments.length) {{
      var s0 = b.segments[0].start, s1 = b.segments[b.segments.length - 1].end;
      el("rect", {{x: label + s0 * scale - 1, y: y - 1, height: row - 2, width: Math.max(2, (s1 - s0) * scale + 2), "class": "path"}}, g);
    }}
  }});
  el("line", {{x1: label + d.critical * scale, x2: label + d.critical * scale, y1: 0, y2: (d.bars.length + 1) * row, stroke: "#b00", "stroke-dasharray": "4 3", id: "critical-line"}});
  var chart = document.getElementById("chart");
  chart.textContent = "";
  chart.appendChild(svg);
  chart.setAttribute("data-bars", String(d.bars.length));
}})();
</script>
</body></html>
"##
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    fn ev(t: f64, e: Event) -> (Duration, Event) {
        (Duration::from_secs_f64(t), e)
    }

    #[test]
    fn a_bar_is_cut_into_what_the_step_was_doing() {
        let a = || "nat_gateway.a".to_string();
        let events = vec![
            ev(0.0, Event::Ready { address: a() }),
            ev(
                0.5,
                Event::Started {
                    address: a(),
                    action: Action::Create,
                    attempt: 1,
                },
            ),
            ev(
                1.0,
                Event::Retrying {
                    address: a(),
                    error: "AWS CreateNatGateway failed: InvalidSubnetID.NotFound".into(),
                    code: Some("InvalidSubnetID.NotFound".into()),
                    attempt: 1,
                },
            ),
            ev(
                1.5,
                Event::Started {
                    address: a(),
                    action: Action::Create,
                    attempt: 2,
                },
            ),
            ev(
                2.0,
                Event::Pending {
                    address: a(),
                    id: "nat-1".into(),
                },
            ),
            ev(
                9.0,
                Event::Done {
                    address: a(),
                    action: Action::Create,
                    id: "nat-1".into(),
                    done: 1,
                    total: 1,
                },
            ),
        ];
        let b = bars(&events, &CriticalPath::default());
        assert_eq!(b.len(), 1);
        let phases: Vec<Phase> = b[0].segments.iter().map(|s| s.phase).collect();
        assert_eq!(
            phases,
            [
                Phase::Waiting,
                Phase::InFlight,
                Phase::Retried,
                Phase::InFlight,
                Phase::Pending
            ]
        );
        assert_eq!(b[0].attempts, 2);
        assert!(!b[0].unfinished);
        let page = html("c</title>", &events, &CriticalPath::default());
        assert!(page.contains("InvalidSubnetID.NotFound</td><td class=\"n\">1</td>"));
        assert!(page.contains("c&lt;/title&gt;"));
        assert!(!page.contains("src="), "no external scripts");
        assert!(!page.contains("<link"), "no external resources");
    }
}
