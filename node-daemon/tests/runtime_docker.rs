//! The Docker runtime against a real dockerd the test starts (and stops): the probe image
//! built by `skiff-node image build`, a pod's pause container wired into a lab node by the
//! pod network, containers in it serving and exec'd into, logs, a memory hog killed by its
//! limit, stop with a grace period, and adoption by a second runtime instance.

use std::{
    io::Read as _,
    net::{Ipv4Addr, TcpStream},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use skiff_lab::{DockerEngine, Lab};
use skiff_node::{
    pods::network::PodNetwork,
    runtime::{
        cgroup::cgroup2_mount, ContainerId, ContainerSpec, ContainerState, DockerRuntime, Runtime,
        Sandbox,
    },
};

fn static_probe() -> PathBuf {
    let path = skiff_lab::static_probe_binary();
    assert!(
        path.is_file(),
        "{} missing: `cargo xtask build` makes it",
        path.display()
    );
    path
}

fn spec(name: &str, argv: &[&str], image_entrypoint: bool) -> ContainerSpec {
    ContainerSpec {
        pod: "default/web".into(),
        name: name.into(),
        image: Some("skiff-probe:latest".into()),
        image_entrypoint,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("POD_NAME".into(), "web".into())],
        working_dir: None,
        hostname: "web".into(),
        cpu_limit_millis: None,
        memory_limit_bytes: None,
        resolv_conf: None,
    }
}

fn wait_exited(runtime: &dyn Runtime, id: &ContainerId, timeout: Duration) -> ContainerState {
    let deadline = Instant::now() + timeout;
    loop {
        let state = runtime.state(id).expect("state");
        if !state.is_running() {
            return state;
        }
        assert!(Instant::now() < deadline, "{id} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn docker_runs_a_pod_in_its_own_network_with_limits_logs_exec_and_adoption() {
    let Some(engine) = DockerEngine::start_or_skip("docker runtime") else {
        return;
    };
    let probe = static_probe();
    let built = Command::new(env!("CARGO_BIN_EXE_skiff-node"))
        .args(["image", "build", "--probe", &probe.display().to_string()])
        .args(["--docker-socket", &engine.socket().display().to_string()])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "image build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&built.stdout).trim(),
        "built skiff-probe:latest"
    );

    let mut lab = Lab::new().expect("lab");
    let node = lab.add_node("n1").expect("node");
    let n = lab.node(node);
    let mount = cgroup2_mount().unwrap();
    let cgroup = n.cgroup.join("pods").join("web");
    std::fs::create_dir_all(&cgroup).unwrap();
    let runtime = DockerRuntime::connect(&engine.socket(), &mount).expect("connect");
    let netns_dir = tempfile::tempdir().unwrap();
    let network = PodNetwork {
        gateway: n.gateway,
        routed: vec!["10.0.0.0/8".parse().unwrap()],
        netns_dir: netns_dir.path().to_path_buf(),
    };
    let octets = n.pod_cidr.octets();
    let ip = Ipv4Addr::new(octets[0], octets[1], octets[2], 20);

    let made = runtime
        .create_sandbox("default/web", &cgroup, None)
        .expect("pause container")
        .expect("Docker makes the namespace");
    let net = n
        .netns
        .run(|| network.create("default/web", ip, Some(&made.netns)))
        .expect("pod network");
    let sandbox = Sandbox {
        netns: net.netns.clone(),
        cgroup: cgroup.clone(),
        infra: Some(made.infra.clone()),
    };

    // The image's own command serves; the node reaches it on the pod's address.
    let server = runtime
        .start(&sandbox, &spec("app", &[], true))
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    let greeting = loop {
        let attempt = n.netns.run(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&(ip, 9000).into(), Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = [0u8; 256];
            let len = s.read(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
        });
        match attempt {
            Ok(text) => break text,
            Err(e) => assert!(Instant::now() < deadline, "web never answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(greeting.starts_with("web "), "{greeting}");

    // Exec: output, exit code, the pod's hostname and the probe on the PATH.
    let out = runtime
        .exec(
            &server,
            &[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; hostname; exit 7".into(),
            ],
            Duration::from_secs(10),
        )
        .expect("exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nweb\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit_code, 7);
    let connect = runtime
        .exec(
            &server,
            &[
                "skiff-probe".into(),
                "connect".into(),
                format!("{ip}:9000"),
                "--proto".into(),
                "tcp".into(),
            ],
            Duration::from_secs(10),
        )
        .expect("exec skiff-probe");
    assert_eq!(
        connect.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&connect.stdout)
    );
    let mut logs = String::new();
    runtime
        .logs(&server, false)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("serving"), "{logs}");
    assert!(runtime.usage(&server).unwrap().memory_bytes > 0);

    // A memory hog is killed by its limit.
    let mut hog = spec(
        "hog",
        &[
            "sh",
            "-c",
            "x=$(head -c 209715200 /dev/zero | tr '\\0' a); echo survived",
        ],
        false,
    );
    hog.memory_limit_bytes = Some(32 << 20);
    let hog = runtime.start(&sandbox, &hog).expect("hog");
    let state = wait_exited(&runtime, &hog, Duration::from_secs(30));
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

    // Stop: SIGTERM, then SIGKILL after the grace period for one that ignores it.
    let stubborn = runtime
        .start(
            &sandbox,
            &spec(
                "stubborn",
                &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
                false,
            ),
        )
        .expect("stubborn");
    let started = Instant::now();
    let state = runtime.stop(&stubborn, Duration::from_secs(1)).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
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

    // A new runtime instance (a restarted daemon) finds the running container.
    let again = DockerRuntime::connect(&engine.socket(), &mount).unwrap();
    let listed = again.list().unwrap();
    let (_, found) = listed.iter().find(|(id, _)| *id == server).expect("listed");
    assert_eq!(found.name, "app");
    assert!(listed.iter().any(|(id, _)| *id == made.infra));
    assert!(again.state(&server).unwrap().is_running());

    let started = Instant::now();
    runtime.stop(&server, Duration::from_secs(10)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "serve ends at SIGTERM"
    );
    for id in [&server, &hog, &stubborn, &made.infra] {
        runtime.remove(id).unwrap();
    }
    n.netns.run(|| network.remove(&net)).unwrap();
    assert!(runtime.list().unwrap().is_empty());
}
