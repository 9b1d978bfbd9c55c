//! `child_cpu_times` against a child of known behaviour: a shell that spins for a while. It
//! checks the figure is the child's (positive, within what its wall time allows on this
//! machine's cores), also after the child exited but before it was reaped. Not a precision
//! test: the OS counts in 10 ms ticks.
#![cfg(target_os = "linux")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loadgen::child_cpu_times;

fn spinning_shell(script: &str) -> Child {
    Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

#[test]
fn a_spinning_child_is_charged_its_cpu_time_and_no_more_than_its_wall_time_allows() {
    let started = Instant::now();
    let mut child = spinning_shell("while :; do :; done");
    // On a loaded machine the child may get little of its wall time: wait (bounded, a liveness
    // check) until the OS has charged it a few ticks, so the checks below are not about rounding.
    let deadline = started + Duration::from_secs(20);
    let (user, system, wall) = loop {
        std::thread::sleep(Duration::from_millis(100));
        let (user, system) = child_cpu_times(&child).expect("child_cpu_times");
        let wall = started.elapsed();
        if user + system >= Duration::from_millis(100) || Instant::now() > deadline {
            break (user, system, wall);
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();

    let cpu = user + system;
    assert!(
        cpu > Duration::ZERO,
        "a child that spun for {wall:?} used no CPU?"
    );
    // One tick of slack per core for the OS's rounding.
    let bound = wall * cores() + Duration::from_millis(10) * cores();
    assert!(
        cpu <= bound,
        "{cpu:?} of CPU in {wall:?} of wall time on {} cores",
        cores()
    );
    // It is the child's time, not ours: this thread slept.
    assert!(
        user > system,
        "a shell loop runs in user space: {user:?} vs {system:?}"
    );
}

#[test]
fn an_exited_child_reports_its_totals_until_it_is_reaped() {
    let mut child = spinning_shell("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done");
    // Wait (bounded) for it to exit without reaping it: its /proc entry turns into a zombie.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stat = format!("/proc/{}/stat", child.id());
    loop {
        let s = std::fs::read_to_string(&stat).unwrap();
        let state = s.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the loop did not end within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (user, system) = child_cpu_times(&child).expect("an unreaped child still reports");
    assert!(user + system > Duration::ZERO, "{user:?} + {system:?}");
    child.wait().unwrap();
    let gone = child_cpu_times(&child).unwrap_err();
    assert_eq!(gone.kind(), std::io::ErrorKind::NotFound, "{gone}");
}
