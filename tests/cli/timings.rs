//! `update cluster --yes --timings=FILE` on AWS's clock (`crate::clock`, at
//! 1/20 of AWS time): the report opens in a real headless Chromium (Debian's,
//! installed by scripts/tools), its script draws one bar per resource, and the
//! critical path it shows is the one keelson computed. The run also shows that
//! a wait does not serialise unrelated work: the route to the NAT gateway is
//! made while the gateway is still pending.

use std::process::Command;

use crate::harness::*;
use crate::proxy::{Fault, FaultProxy};

fn via(sb: &Sandbox, url: &str, args: &[&str]) -> Run {
    let mut cmd = sb.command(args);
    cmd.args(["--state", &sb.state()])
        .env("AWS_ENDPOINT_URL", url);
    sb.run_cmd(cmd)
}

/// The DOM of `page` after its scripts ran, from headless Chromium with the
/// flags this closed network needs (no background connections).
fn dump_dom(sb: &Sandbox, page: &std::path::Path) -> String {
    let profile = sb.path("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is not installed: run scripts/tools install");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_timings_report_renders_a_bar_per_resource_and_the_critical_path() {
    let sb = Sandbox::new("timings");
    let name = sb.cluster("tim");
    let proxy = FaultProxy::start(Fault::Clock(crate::clock::Clock::tests(20_261_203)));
    let url = proxy.url.clone();
    let key = sb.path("admin.pub");
    let r = via(
        &sb,
        &url,
        &[
            "create",
            "cluster",
            &name,
            "--image",
            "ami-1e749f67",
            "--zones",
            "us-east-1a",
            "--topology",
            "private",
            "--master-count",
            "1",
            "--node-count",
            "1",
            "--ssh-public-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = sb.path("timings.html");
    let timings = format!("--timings={}", report.display());
    let r = via(&sb, &url, &["update", "cluster", &name, "--yes", &timings]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // keelson's bound, as printed: "critical path: 1m51s (vpc -> ...)".
    let line = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("critical path: "))
        .unwrap_or_else(|| panic!("no critical path printed:\n{}", r.stderr));
    let bound = line.split(' ').next().unwrap();
    assert!(line.contains("nat_gateway"), "{line}");
    let changes = r.stderr.lines().filter(|l| l.starts_with('[')).count();
    assert!(changes > 20, "{}", r.stderr);

    // The route to the NAT gateway is made while the gateway is pending.
    let pos = |what: &str| {
        r.stderr
            .lines()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what} not in:\n{}", r.stderr))
    };
    assert!(
        pos(&format!(
            "created route.private-us-east-1a.{name}:0.0.0.0/0"
        )) < pos(&format!("created nat_gateway.us-east-1a.{name}")),
        "the route waited for the NAT gateway:\n{}",
        r.stderr
    );

    // The report, opened in a real browser: its script drew one bar per change.
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(
        !page.contains("src=") && !page.contains("<link"),
        "self-contained"
    );
    let dom = dump_dom(&sb, &report);
    let bars = dom.matches("<g class=\"bar").count();
    assert_eq!(bars, changes, "bars drawn:\n{dom}");
    assert!(dom.contains(&format!("data-bars=\"{changes}\"")));
    assert!(
        dom.matches("<rect").count() > bars,
        "each bar has its segments"
    );
    // The critical path shown is keelson's, and highlighted.
    assert!(
        dom.contains(&format!("<b id=\"critical\">{bound}</b>")),
        "{bound}:\n{dom}"
    );
    assert!(dom.contains("<g class=\"bar critical\""), "{dom}");
    assert!(dom.contains("id=\"critical-line\""));
    assert!(dom.contains("id=\"slowest\""));
}

/// The bench (`scripts/bench --clock`; ignored in the suite, it takes minutes):
/// a first apply on AWS's clock at `KEELSON_BENCH_SCALE` (default 1.0, AWS's
/// own time) for the reference cluster (3 zones, private, bastion, 3 masters,
/// 3 nodes: 7 groups) and for 10- and 50-group clusters (the reference plus
/// node groups of one instance), printing the wall time of the apply against
/// its critical path (the model's, and the one over the times the run's steps
/// took), and the requests per resource; each at every parallelism of
/// `KEELSON_BENCH_PARALLELISM` (default `8,0`: the default and unbounded) and
/// with the clock's figures of `KEELSON_BENCH_FIGURES` (default `fixed,drawn`:
/// each at the middle the model uses, which makes its bound exact, and drawn
/// from their spans as AWS would vary them). The clock lives in this
/// test crate (the proxy in front of the emulator), so the bench runs here
/// rather than in the script.
#[test]
#[ignore = "the bench: minutes on AWS's clock; run by scripts/bench --clock"]
fn bench_first_apply_against_its_critical_path() {
    let scale: f64 = std::env::var("KEELSON_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let sb = Sandbox::new("bench-clock");
    let key = sb.path("admin.pub");
    // KEELSON_BENCH_GROUPS=50,10 picks the clusters (7 is the reference).
    let sizes: Vec<usize> = std::env::var("KEELSON_BENCH_GROUPS")
        .unwrap_or_else(|_| "7,10,50".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let list = |var: &str, default: &str| -> Vec<String> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let parallelisms = list("KEELSON_BENCH_PARALLELISM", "8,0");
    let figures = list("KEELSON_BENCH_FIGURES", "fixed,drawn");
    let mut runs = Vec::new();
    for groups in &sizes {
        for f in &figures {
            for p in &parallelisms {
                runs.push((*groups, f.clone(), p.clone()));
            }
        }
    }
    for (n, (groups, figures, parallelism)) in runs.into_iter().enumerate() {
        let name = sb.cluster(&format!("b{groups}-{n}"));
        let r = sb.run(&[
            "create",
            "cluster",
            &name,
            "--state",
            &sb.state(),
            "--image",
            "ami-1e749f67",
            "--zones",
            "us-east-1a,us-east-1b,us-east-1c",
            "--topology",
            "private",
            "--bastion",
            "--master-count",
            "3",
            "--node-count",
            "3",
            "--ssh-public-key",
            key.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        for i in 7..groups {
            let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
            sb.ok(&[
                "create",
                "ig",
                &format!("extra-{i}"),
                "--name",
                &name,
                "--subnet",
                zone,
                "--min-size",
                "1",
                "--max-size",
                "1",
                "--image",
                "ami-1e749f67",
            ]);
        }
        // The model's bound, exactly (the printed one is rounded), from the
        // plan the apply will make: the same specs, the same empty cloud.
        let saved = sb.path(&format!("plan-{n}.json"));
        let out = format!("--out={}", saved.display());
        sb.ok(&["update", "cluster", &name, &out]);
        let plan: keelson::plan::Plan =
            serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
        let bound = keelson::apply::critical::critical_path(&plan)
            .total
            .as_secs_f64();
        let proxy = FaultProxy::start(Fault::Clock(crate::clock::Clock {
            seed: 20_261_203,
            scale,
            consistency_scale: scale,
            fixed: match figures.as_str() {
                "fixed" => true,
                "drawn" => false,
                other => panic!("KEELSON_BENCH_FIGURES: {other} is not fixed or drawn"),
            },
        }));
        let started = std::time::Instant::now();
        let timings = format!(
            "--timings={}",
            sb.path(&format!("timings-{groups}-{figures}-{parallelism}.html"))
                .display()
        );
        let par = format!("--parallelism={parallelism}");
        let r = via(
            &sb,
            &proxy.url,
            &["update", "cluster", &name, "--yes", &timings, &par],
        );
        let whole = started.elapsed();
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let stats = proxy.stats();
        let changes = r.stderr.lines().filter(|l| l.starts_with('[')).count();
        let took = r
            .stderr
            .lines()
            .find(|l| l.starts_with("apply took "))
            .unwrap_or("apply took ?");
        let path = r
            .stderr
            .lines()
            .find(|l| l.starts_with("critical path: "))
            .unwrap_or("critical path: ?");
        let observed = r
            .stderr
            .lines()
            .find(|l| l.starts_with("observed critical path: "))
            .unwrap_or("observed critical path: ?");
        // The wall time as keelson printed it ("2m34s", "23.1s"), against the
        // model's bound at the clock's scale (at scale 1, keelson's own ratio).
        let wall = took
            .strip_prefix("apply took ")
            .and_then(|t| t.split(' ').next())
            .map_or(f64::NAN, seconds);
        println!(
            "BENCH groups={groups} figures={figures} parallelism={parallelism} scale={scale} resources={changes} requests={} per_resource={:.2} command={:.1}s model_bound={:.2}s wall={wall:.1}s ratio_model={:.3} | {took} | {path} | {observed}",
            stats.total(),
            stats.total() as f64 / changes.max(1) as f64,
            whole.as_secs_f64(),
            bound * scale,
            wall / (bound * scale),
        );
        // KEELSON_BENCH_REPORTS=DIR keeps the reports (the sandbox goes).
        if let Ok(dir) = std::env::var("KEELSON_BENCH_REPORTS") {
            let file = format!("timings-{groups}-{figures}-{parallelism}.html");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(sb.path(&file), std::path::Path::new(&dir).join(&file)).unwrap();
        }
        // Straight to the emulator: the clock would wait out every `deleting`.
        let _ = sb.run(&["delete", "cluster", &name, "--yes", "--state", &sb.state()]);
    }
}

/// Seconds in a duration as `apply::critical::human` writes it: `4m12s`,
/// `52.3s`, `850ms`.
fn seconds(h: &str) -> f64 {
    if let Some(ms) = h.strip_suffix("ms") {
        return ms.parse::<f64>().unwrap_or(f64::NAN) / 1000.0;
    }
    let h = h.strip_suffix('s').unwrap_or(h);
    match h.split_once('m') {
        Some((m, s)) => {
            m.parse::<f64>().unwrap_or(f64::NAN) * 60.0 + s.parse::<f64>().unwrap_or(f64::NAN)
        }
        None => h.parse().unwrap_or(f64::NAN),
    }
}
