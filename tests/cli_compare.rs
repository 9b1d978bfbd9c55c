//! `iomodels compare` as a user runs it: every format over real result files, a run folder,
//! `--baseline`, and the one-line exit-2 errors a user can cause.
//!
//! The result files come from the real `iomodels load --json` against a std echo thread (so
//! these tests depend on neither the `servers` crate nor timing); the run folder is assembled
//! from them with the library's own record types. Not a test of the table's layout (the
//! exporter's unit tests do that) nor of the figures (`loadgen/tests`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;
use common::{echo_server, iomodels};

use iomodels::record::{
    ModelSummary, PointResult, PointSpec, PointSummary, SUMMARY_SCHEMA, ServeConfig, ServerSide,
    Summary,
};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Two result files, `before.json` and `after.json`, written once by `iomodels load --json`
/// (each run is bounded by its own `-t`) and shared by every test; left in the temp dir, since
/// no single test knows it is the last to use them.
fn results() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let addr = echo_server();
        let dir = common::scratch("cli-compare", "results");
        let mut files = Vec::new();
        for name in ["before", "after"] {
            let path = dir.join(format!("{name}.json"));
            let out = iomodels(&[
                "load",
                &addr,
                "-c",
                "2",
                "-t",
                "300ms",
                "--warmup",
                "50ms",
                "--json",
                path.to_str().unwrap(),
            ]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            files.push(path);
        }
        (files[0].clone(), files[1].clone())
    })
}

/// A run folder with models `epoll` and `mio` at one `latency` point, built from the result
/// files the way `run` lays them out.
fn run_folder() -> PathBuf {
    let (a, b) = results();
    let dir = a.parent().unwrap().join("run");
    if dir.join("summary.json").is_file() {
        return dir;
    }
    let mut models = Vec::new();
    for (model, src) in [("epoll", a), ("mio", b)] {
        let mut r = PointResult::read(src).unwrap();
        r.server = Some(ServerSide {
            model: model.into(),
            config: ServeConfig::defaults(None),
            stats: None,
        });
        std::fs::create_dir_all(dir.join(model)).unwrap();
        r.write_json(&dir.join(model).join("latency.json")).unwrap();
        models.push(ModelSummary {
            model: model.into(),
            description: String::new(),
            points: vec![
                PointSummary::from_rounds("latency", format!("{model}/latency.json"), &[(1, &r)])
                    .unwrap(),
            ],
            failures: vec![],
        });
    }
    let first = PointResult::read(a).unwrap().report;
    Summary {
        schema: SUMMARY_SCHEMA.into(),
        tool_version: first.tool_version.clone(),
        git_commit: None,
        command: "iomodels run (assembled by tests/cli_compare.rs)".into(),
        started: "2025-01-01T00:00:00Z".into(),
        finished: Some("2025-01-01T00:00:01Z".into()),
        host: first.host.clone(),
        server_cpus: None,
        client_cpus: None,
        rounds: 1,
        duration_s: 0.3,
        warmup_s: 0.05,
        points: vec![PointSpec {
            name: "latency".into(),
            connections: 2,
            size: 64,
            depth: 1,
            rate_of_throughput: None,
            ..Default::default()
        }],
        models,
        interrupted: false,
        warnings: vec![],
    }
    .write(&dir.join("summary.json"))
    .unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_format_over_two_result_files() {
    let (a, b) = results();
    for format in ["table", "markdown", "csv", "json"] {
        let out = iomodels(&["compare", s(a), s(b), "--format", format]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            text(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "{format}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        // A load --json result has no server half: the model is named after the file.
        for name in ["before", "after"] {
            assert!(
                stdout.contains(name),
                "{format}: {name} missing in\n{stdout}"
            );
        }
        match format {
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                assert_eq!(v["rows"].as_array().unwrap().len(), 2);
                assert!(v["changes"].is_array(), "{stdout}");
            }
            "csv" => assert_eq!(stdout.lines().count(), 3, "{stdout}"),
            _ => assert!(stdout.contains("change: after against before"), "{stdout}"),
        }
    }
}

#[test]
fn a_run_folder_its_summary_and_a_baseline() {
    let dir = run_folder();
    for path in [dir.clone(), dir.join("summary.json")] {
        let out = iomodels(&["compare", s(&path), "--baseline", "epoll"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("epoll (baseline)") && stdout.contains("mio"),
            "{stdout}"
        );
        assert!(stdout.contains('×'), "{stdout}");
        assert!(stdout.contains("latency: 2 connections × 64 B"), "{stdout}");
    }
    // A point file of the run, alone: the model and point come from the layout.
    let out = iomodels(&[
        "compare",
        s(&dir.join("mio/latency.json")),
        "--format",
        "csv",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(",mio,latency,"),
        "{}",
        text(&out.stdout)
    );
}

/// Exit 2 and exactly one line on stderr, containing `want`.
fn usage_error(args: &[&str], want: &str) {
    let out = iomodels(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "{args:?}: nothing printed on failure"
    );
}

#[test]
fn user_errors_exit_2_with_one_line() {
    let (a, _) = results();
    let dir = a.parent().unwrap();
    usage_error(
        &["compare", s(&dir.join("no-such-run"))],
        "does not exist: give a run folder",
    );
    // One bad path among good ones still fails the whole command.
    usage_error(
        &["compare", s(a), s(&dir.join("no-such-run"))],
        "does not exist",
    );
    let other = dir.join("other.json");
    std::fs::write(&other, "{\"hello\": 1}\n").unwrap();
    usage_error(&["compare", s(&other)], "is not an iomodels result");
    usage_error(&["compare", s(dir)], "no summary.json");
    usage_error(
        &["compare", s(a), "--baseline", "iocp"],
        "--baseline iocp: no model of that name",
    );
    // An --html path that cannot be written fails before any table is printed.
    usage_error(
        &[
            "compare",
            s(a),
            "--html",
            s(&dir.join("no-such-dir/report.html")),
        ],
        "--html",
    );
    // clap's own: no path at all, an unknown format.
    for args in [&["compare"][..], &["compare", s(a), "--format", "xml"]] {
        assert_eq!(iomodels(args).status.code(), Some(2), "{args:?}");
    }
}
