//! The embedded container runtime on the real kernel: namespaces, cgroup limits, logs,
//! stop, exec, adoption and restarts. Each test runs its containers in a lab pod (its own
//! network namespace and a cgroup under the lab's subtree).

use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use skiff_lab::{Lab, PodId};
use skiff_node::runtime::{
    supervisor::{Backoff, RestartPolicy, Status, Supervisor},
    ContainerId, ContainerSpec, ContainerState, EmbeddedRuntime, Runtime, Sandbox,
};

/// A lab with one pod, a runtime with its own state directory, and the pod's sandbox.
/// Field order is drop order: containers' cgroups go with the lab.
struct Setup {
    runtime: EmbeddedRuntime,
    sandbox: Sandbox,
    state_dir: tempfile::TempDir,
    _lab: Lab,
}

impl Drop for Setup {
    /// Also when a test fails: removing a container also removes the cgroups it has outside
    /// the lab's subtree (on hybrid hosts, in the v1 memory and cpu hierarchies).
    fn drop(&mut self) {
        for (id, _) in self.runtime.list().unwrap_or_default() {
            if let Err(e) = self.runtime.remove(&id) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

fn setup(log_max_bytes: u64) -> Setup {
    let mut lab = Lab::new().expect("lab");
    let node = lab.add_node("n").expect("node");
    let pod: PodId = lab.add_pod(node, "p").expect("pod");
    let sandbox = Sandbox {
        netns: lab.pod(pod).netns.path().to_path_buf(),
        cgroup: lab.pod(pod).cgroup.clone(),
        infra: None,
    };
    let state_dir = tempfile::tempdir().expect("state dir");
    let runtime = runtime_on(state_dir.path()).with_log_max_bytes(log_max_bytes);
    Setup {
        runtime,
        sandbox,
        state_dir,
        _lab: lab,
    }
}

fn runtime_on(dir: &Path) -> EmbeddedRuntime {
    EmbeddedRuntime::new(dir)
        .expect("runtime")
        .with_shim(Path::new(env!("CARGO_BIN_EXE_skiff-node")))
}

fn spec(argv: &[&str]) -> ContainerSpec {
    ContainerSpec {
        pod: "default/web".into(),
        name: "app".into(),
        image: None,
        image_entrypoint: false,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("GREETING".into(), "hello world".into())],
        working_dir: None,
        hostname: "web".into(),
        cpu_limit_millis: None,
        memory_limit_bytes: None,
        resolv_conf: None,
    }
}

fn sh(script: &str) -> ContainerSpec {
    spec(&["sh", "-c", script])
}

fn wait_exited(runtime: &dyn Runtime, id: &ContainerId, timeout: Duration) -> ContainerState {
    let deadline = Instant::now() + timeout;
    loop {
        let state = runtime.state(id).expect("state");
        if !state.is_running() {
            return state;
        }
        assert!(Instant::now() < deadline, "{id} still running: {state:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn log_text(runtime: &EmbeddedRuntime, id: &ContainerId) -> String {
    std::fs::read_to_string(runtime.log_path(id)).expect("log")
}

#[test]
fn container_gets_its_namespaces_env_and_args() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = setup(1 << 20);
    let id = s
        .runtime
        .start(
            &s.sandbox,
            &spec(&[
                "sh",
                "-c",
                "echo host=$(hostname) self=$$ net=$(readlink /proc/self/ns/net) \
                 env=$GREETING args=$0,$1; tr '\\0' ' ' < /proc/1/cmdline; echo",
                "first",
                "second arg",
            ]),
        )
        .expect("start");
    let state = wait_exited(&s.runtime, &id, Duration::from_secs(5));
    assert!(
        matches!(state, ContainerState::Exited { code: Some(0), .. }),
        "{state:?}"
    );
    let log = log_text(&s.runtime, &id);
    let netns_inode = std::fs::metadata(&s.sandbox.netns).expect("netns").ino();
    assert!(log.contains("host=web "), "{log}");
    // sh is the shim's child: PID 2 in the container's own PID namespace.
    assert!(log.contains("self=2 "), "{log}");
    assert!(log.contains(&format!("net=net:[{netns_inode}]")), "{log}");
    assert!(
        log.contains("env=hello world args=first,second arg"),
        "{log}"
    );
    assert!(
        log.contains("container-init start"),
        "PID 1 is the shim: {log}"
    );
    s.runtime.remove(&id).expect("remove");
    assert!(s.runtime.list().expect("list").is_empty());
    assert!(!s.sandbox.cgroup.join(&id.0).exists());
}

#[test]
fn output_is_logged_and_rotated() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = setup(4096);
    let id = s
        .runtime
        .start(&s.sandbox, &spec(&["seq", "1", "3000"]))
        .expect("start");
    wait_exited(&s.runtime, &id, Duration::from_secs(5));
    let log_path = s.runtime.log_path(&id);
    let current = std::fs::read_to_string(&log_path).expect("log");
    let previous = std::fs::read_to_string(log_path.with_file_name("log.1")).expect("log.1");
    assert!(current.len() <= 4096 && previous.len() == 4096);
    assert!(current.ends_with("2999\n3000\n"), "{current}");
    // The first lines went out with an older rotation.
    assert!(!previous.starts_with("1\n2\n"), "{previous}");
    s.runtime.remove(&id).expect("remove");

    let s = setup(1 << 20);
    let id = s
        .runtime
        .start(&s.sandbox, &sh("echo to-stdout; echo to-stderr >&2"))
        .expect("start");
    wait_exited(&s.runtime, &id, Duration::from_secs(5));
    let log = log_text(&s.runtime, &id);
    assert!(
        log.contains("to-stdout\n") && log.contains("to-stderr\n"),
        "{log}"
    );
    s.runtime.remove(&id).expect("remove");
}

#[test]
fn memory_hog_is_oom_killed() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = setup(1 << 20);
    let mut hog = sh("head -c 200M /dev/zero | tail; echo survived");
    hog.memory_limit_bytes = Some(32 << 20);
    hog.cpu_limit_millis = Some(500);
    let id = s.runtime.start(&s.sandbox, &hog).expect("start");
    let state = wait_exited(&s.runtime, &id, Duration::from_secs(10));
    assert!(
        matches!(
            state,
            ContainerState::Exited {
                oom_killed: true,
                ..
            }
        ),
        "{state:?}"
    );
    s.runtime.remove(&id).expect("remove");
}

#[test]
fn stop_terminates_gracefully_or_kills_after_the_grace_period() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = setup(1 << 20);
    let polite = s
        .runtime
        .start(
            &s.sandbox,
            &sh("trap 'echo bye; exit 7' TERM; while true; do sleep 0.05; done"),
        )
        .expect("start");
    let stubborn = s
        .runtime
        .start(
            &s.sandbox,
            &sh("trap '' TERM; while true; do sleep 0.05; done"),
        )
        .expect("start");
    // Let both shells install their traps.
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let state = s
        .runtime
        .stop(&polite, Duration::from_secs(5))
        .expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(state, ContainerState::Exited { code: Some(7), .. }),
        "{state:?}"
    );
    assert!(log_text(&s.runtime, &polite).contains("bye"));

    let started = Instant::now();
    let state = s
        .runtime
        .stop(&stubborn, Duration::from_millis(500))
        .expect("stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        matches!(
            state,
            ContainerState::Exited {
                signal: Some(9),
                ..
            }
        ),
        "{state:?}"
    );
    assert_eq!(s.runtime.state(&stubborn).expect("state"), state);
    s.runtime.remove(&polite).expect("remove");
    s.runtime.remove(&stubborn).expect("remove");
}

#[test]
fn exec_runs_inside_the_container() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = setup(1 << 20);
    let id = s
        .runtime
        .start(&s.sandbox, &spec(&["sleep", "30"]))
        .expect("start");
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = s
        .runtime
        .exec(
            &id,
            &argv(&["sh", "-c", "echo hi; echo oops >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .expect("exec");
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"hi\n"[..], &b"oops\n"[..], 3)
    );
    let out = s
        .runtime
        .exec(
            &id,
            &argv(&[
                "sh",
                "-c",
                "hostname; echo $GREETING; cat /proc/1/cmdline | tr '\\0' ' '",
            ]),
            Duration::from_secs(5),
        )
        .expect("exec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("web\nhello world\n"), "{stdout}");
    assert!(stdout.contains("container-init start"), "{stdout}");

    let started = Instant::now();
    let err = s
        .runtime
        .exec(&id, &argv(&["sleep", "10"]), Duration::from_millis(300))
        .expect_err("times out");
    assert!(err.to_string().contains("did not finish"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let usage = s.runtime.usage(&id).expect("usage");
    assert!(
        usage.memory_bytes > 0 && usage.cpu_usage_usec > 0,
        "{usage:?}"
    );
    s.runtime.stop(&id, Duration::from_secs(1)).expect("stop");
    s.runtime.remove(&id).expect("remove");
}

#[test]
fn restarted_daemon_adopts_running_containers() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = setup(1 << 20);
    let container = spec(&["sleep", "30"]);
    let id = s.runtime.start(&s.sandbox, &container).expect("start");
    let ContainerState::Running { pid, started } = s.runtime.state(&id).expect("state") else {
        panic!("not running");
    };

    let adopted = runtime_on(s.state_dir.path());
    assert_eq!(adopted.list().expect("list"), vec![(id.clone(), container)]);
    assert_eq!(
        adopted.state(&id).expect("state"),
        ContainerState::Running { pid, started }
    );
    let state = adopted.stop(&id, Duration::from_secs(2)).expect("stop");
    // sleep does not handle SIGTERM; its default action ends it.
    assert!(
        matches!(
            state,
            ContainerState::Exited {
                signal: Some(15),
                ..
            }
        ),
        "{state:?}"
    );
    adopted.remove(&id).expect("remove");
}

#[test]
fn supervisor_restarts_with_backoff_per_policy() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = setup(1 << 20);
    let runtime: Arc<dyn Runtime> = Arc::new(runtime_on(s.state_dir.path()));
    let backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
        reset_after: Duration::from_secs(60),
    };
    let mut supervisor = Supervisor::start(
        runtime.clone(),
        s.sandbox.clone(),
        sh("exit 1"),
        RestartPolicy::OnFailure,
        backoff,
    )
    .expect("start");
    let begun = Instant::now();
    let mut restarted_at = Vec::new();
    while supervisor.restarts() < 4 {
        assert!(begun.elapsed() < Duration::from_secs(5), "too slow");
        let before = supervisor.restarts();
        supervisor.poll(SystemTime::now()).expect("poll");
        if supervisor.restarts() > before {
            restarted_at.push(begun.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let gaps: Vec<Duration> = restarted_at.windows(2).map(|w| w[1] - w[0]).collect();
    // Delays of 200, 400 and 800 ms after the first restart, plus each run's few ms.
    assert!(
        gaps.windows(2)
            .all(|w| w[1] > w[0] + Duration::from_millis(100)),
        "{gaps:?}"
    );
    assert!(gaps[0] >= Duration::from_millis(200), "{gaps:?}");
    // Only the current and the previous run are kept.
    assert_eq!(runtime.list().expect("list").len(), 2);
    supervisor
        .shutdown(Duration::from_secs(1))
        .expect("shutdown");
    assert!(runtime.list().expect("list").is_empty());

    let mut never = Supervisor::start(
        runtime.clone(),
        s.sandbox.clone(),
        sh("exit 1"),
        RestartPolicy::Never,
        backoff,
    )
    .expect("start");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match never.poll(SystemTime::now()).expect("poll") {
            Status::Running if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            status => break status,
        }
    };
    assert!(
        matches!(
            status,
            Status::Done(ContainerState::Exited { code: Some(1), .. })
        ),
        "{status:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(matches!(
        never.poll(SystemTime::now()).expect("poll"),
        Status::Done(_)
    ));
    assert_eq!(never.restarts(), 0);
    never.shutdown(Duration::from_secs(1)).expect("shutdown");
}
