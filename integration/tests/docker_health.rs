//! Healthchecks through the real docker CLI: `--health-cmd` and friends reach
//! `healthy`, `unhealthy` after Retries failures, a probe that overruns its timeout is
//! killed and logged as Docker logs it, failures in the start period do not count,
//! `docker ps` and its `health` filter show the status, `health_status` events are
//! streamed, a stop ends the probes; an image's HEALTHCHECK is inherited (and
//! overridden field by field, or switched off), and probes resume after berthd restarts;
//! the health state (status, streak, log) survives a SIGKILL of berthd, the checkers
//! carry on from it, and a start of the container puts it back to `starting`.
use std::time::Duration;

use berth_integration::cri::busybox_image;
use berth_integration::docker::DockerWorld;

fn inspect(docker: &DockerWorld, name: &str, format: &str) -> String {
    docker.inspect(name, format)
}

fn wait_for(docker: &DockerWorld, name: &str, format: &str, wanted: &str, limit: Duration) -> String {
    docker.wait_for_inspect(name, format, wanted, limit)
}

const STATUS: &str = "{{.State.Health.Status}}";

fn ps_status(docker: &DockerWorld, name: &str) -> String {
    docker.docker(&["ps", "--filter", &format!("name={name}"), "--format", "{{.Status}}"]).ok().stdout.trim().to_string()
}

#[test]
fn cli_healthchecks_pass_fail_time_out_and_stop() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let since = docker.in_netns("date +%s").ok().stdout.trim().to_string();
    let quick = ["--health-interval", "1s", "--health-retries", "2"];
    let run = |name: &str, check: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(check);
        args.extend_from_slice(&["busybox", "sleep", "300"]);
        docker.docker(&args).ok();
    };
    run("good", &[&["--health-cmd", "echo ok"][..], &quick].concat());
    run("bad", &[&["--health-cmd", "echo nope; exit 1"][..], &quick].concat());
    run("slow", &["--health-cmd", "sleep 5", "--health-timeout", "1s", "--health-interval", "2s", "--health-retries", "1"]);
    run("patient", &["--health-cmd", "false", "--health-start-period", "60s", "--health-start-interval", "1s", "--health-interval", "1s", "--health-retries", "1"]);
    assert!(ps_status(&docker, "bad").ends_with("(health: starting)"), "{}", ps_status(&docker, "bad"));

    assert_eq!(wait_for(&docker, "good", STATUS, "healthy", Duration::from_secs(15)), "healthy", "{}", docker.world.daemon.log());
    assert_eq!(inspect(&docker, "good", "{{(index .State.Health.Log 0).ExitCode}}|{{(index .State.Health.Log 0).Output}}"), "0|ok");
    assert!(ps_status(&docker, "good").ends_with("(healthy)"), "{}", ps_status(&docker, "good"));

    assert_eq!(wait_for(&docker, "bad", STATUS, "unhealthy", Duration::from_secs(15)), "unhealthy");
    assert!(inspect(&docker, "bad", "{{.State.Health.FailingStreak}}").parse::<i64>().unwrap_or(0) >= 2);
    assert_eq!(inspect(&docker, "bad", "{{(index .State.Health.Log 0).ExitCode}}|{{(index .State.Health.Log 0).Output}}"), "1|nope");
    assert!(ps_status(&docker, "bad").ends_with("(unhealthy)"));

    assert_eq!(wait_for(&docker, "slow", STATUS, "unhealthy", Duration::from_secs(15)), "unhealthy");
    assert_eq!(inspect(&docker, "slow", "{{(index .State.Health.Log 0).ExitCode}}|{{(index .State.Health.Log 0).Output}}"), "-1|Health check exceeded timeout (1s)");
    let took = inspect(&docker, "slow", "{{with index .State.Health.Log 0}}{{.End.Sub .Start}}{{end}}");
    assert!(took.ends_with("ms") || took.starts_with("1."), "the overrunning probe took {took}, not about its 1s timeout");
    // The killed probe is gone: at most the one now running is a `sleep 5`.
    let top = docker.docker(&["top", "slow"]).ok().stdout;
    assert!(top.matches("sleep 5").count() <= 1, "{top}");

    // Failures in the start period leave it starting, without a streak.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(inspect(&docker, "patient", "{{.State.Health.Status}} {{.State.Health.FailingStreak}}"), "starting 0");
    assert!(inspect(&docker, "patient", "{{len .State.Health.Log}}").parse::<usize>().unwrap_or(0) >= 2, "no probes at the start interval");

    let healthy = docker.docker(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"]).ok();
    assert_eq!(healthy.stdout.trim(), "good");
    let kept = wait_for(&docker, "bad", "{{len .State.Health.Log}}", "5", Duration::from_secs(10));
    assert_eq!(kept, "5", "Docker keeps the last five results");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(&docker, "bad", "{{len .State.Health.Log}}"), "5", "more than five results kept");

    // A stop ends the probes and leaves the status unhealthy, as dockerd does.
    docker.docker(&["stop", "-t", "1", "good"]).ok();
    let probes = inspect(&docker, "good", "{{len .State.Health.Log}}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(inspect(&docker, "good", "{{.State.Health.Status}} {{len .State.Health.Log}}"), format!("unhealthy {probes}"));

    let until = (docker.in_netns("date +%s").ok().stdout.trim().parse::<u64>().unwrap_or(0) + 1).to_string();
    let events = docker
        .docker(&["events", "--since", &since, "--until", &until, "--filter", "event=health_status", "--format", "{{.Action}} {{.Actor.Attributes.name}}"])
        .ok();
    for wanted in ["health_status: healthy good", "health_status: unhealthy bad", "health_status: unhealthy slow"] {
        assert!(events.stdout.lines().any(|l| l == wanted), "no {wanted:?} in {events}");
    }
    assert!(!events.stdout.contains("patient"), "{events}");

    // Bad input: Docker's messages, and nothing made.
    let api = |body: &str| {
        docker.in_netns(&format!("curl -s -X POST -H 'Content-Type: application/json' -d '{body}' --unix-socket {} http://x/v1.50/containers/create", docker.socket().display()))
    };
    let short = api(r#"{"Image":"busybox","Healthcheck":{"Test":["CMD","true"],"Interval":10}}"#);
    assert!(short.stdout.contains("Interval in Healthcheck cannot be less than 1ms"), "{short}");
    let negative = api(r#"{"Image":"busybox","Healthcheck":{"Test":["CMD","true"],"Retries":-1}}"#);
    assert!(negative.stdout.contains("Retries in Healthcheck cannot be negative"), "{negative}");
    let count = docker.docker(&["ps", "-aq"]).ok().stdout.lines().count();
    assert_eq!(count, 4, "a refused create left a container");
    docker.docker(&["rm", "-f", "good", "bad", "slow", "patient"]).ok();
}

#[test]
fn image_healthcheck_is_inherited_and_resumes_after_a_berthd_restart() {
    let mut docker = DockerWorld::new();
    let mut image = busybox_image();
    image.config["config"]["Healthcheck"] = serde_json::json!({
        "Test": ["CMD-SHELL", "echo probe >> /tmp/probes; test -e /tmp/up"], "Interval": 1_000_000_000u64, "Retries": 1
    });
    image.push(&docker.world.registry, "library/busybox", "health");
    docker.docker(&["pull", "-q", "busybox:health"]).ok();

    docker.docker(&["run", "-d", "--name", "hc", "busybox:health", "sleep", "300"]).ok();
    assert_eq!(inspect(&docker, "hc", "{{json .Config.Healthcheck.Test}}"), r#"["CMD-SHELL","echo probe >> /tmp/probes; test -e /tmp/up"]"#);
    assert_eq!(wait_for(&docker, "hc", STATUS, "unhealthy", Duration::from_secs(15)), "unhealthy");
    docker.docker(&["exec", "hc", "sh", "-c", ": > /tmp/up"]).ok();
    assert_eq!(wait_for(&docker, "hc", STATUS, "healthy", Duration::from_secs(15)), "healthy");

    // The container's own command over the image's, the image's interval kept.
    docker.docker(&["run", "-d", "--name", "mine", "--health-cmd", "echo mine", "busybox:health", "sleep", "300"]).ok();
    assert_eq!(inspect(&docker, "mine", "{{json .Config.Healthcheck.Test}} {{.Config.Healthcheck.Interval}}"), r#"["CMD-SHELL","echo mine"] 1s"#);
    assert_eq!(wait_for(&docker, "mine", STATUS, "healthy", Duration::from_secs(15)), "healthy");
    docker.docker(&["run", "-d", "--name", "none", "--no-healthcheck", "busybox:health", "sleep", "300"]).ok();
    assert_eq!(inspect(&docker, "none", "{{.State.Health}}"), "<nil>");
    let none_status = ps_status(&docker, "none");
    assert!(none_status.starts_with("Up") && !none_status.contains('('), "{none_status}");

    // berthd restarts; the container keeps running and its probes start again.
    docker.world.daemon.kill();
    docker.world.daemon.spawn();
    let probes = || docker.docker(&["exec", "hc", "wc", "-l", "/tmp/probes"]).ok().stdout.split_whitespace().next().unwrap_or("0").parse::<u64>().unwrap_or(0);
    let before = probes();
    assert_eq!(wait_for(&docker, "hc", STATUS, "healthy", Duration::from_secs(15)), "healthy", "{}", docker.world.daemon.log());
    std::thread::sleep(Duration::from_secs(3));
    assert!(probes() >= before + 2, "the probes did not resume after the restart: {before} then {}", probes());
    docker.docker(&["rm", "-f", "hc", "mine", "none"]).ok();
}

/// Status, streak and the start times of the logged results.
fn health_state(docker: &DockerWorld, name: &str) -> (String, i64, Vec<String>) {
    let seen = inspect(docker, name, "{{.State.Health.Status}} {{.State.Health.FailingStreak}}{{range .State.Health.Log}} {{.Start.UnixNano}}{{end}}");
    let mut words = seen.split_whitespace().map(str::to_string);
    let status = words.next().unwrap_or_default();
    let streak = words.next().and_then(|w| w.parse().ok()).unwrap_or(-1);
    (status, streak, words.collect())
}

#[test]
fn health_state_survives_a_berthd_kill_and_the_checkers_carry_on() {
    let mut docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let quick = ["--health-interval", "1s", "--health-retries", "2"];
    let run = |name: &str, check: &str| {
        docker.docker(&[&["run", "-d", "--name", name, "--health-cmd", check][..], &quick, &["busybox", "sleep", "300"]].concat()).ok();
    };
    run("fine", "test ! -e /tmp/sick");
    run("sick", "echo nope; test -e /tmp/well");
    assert_eq!(wait_for(&docker, "fine", STATUS, "healthy", Duration::from_secs(15)), "healthy", "{}", docker.world.daemon.log());
    assert_eq!(wait_for(&docker, "sick", "{{.State.Health.Status}} {{len .State.Health.Log}}", "unhealthy 5", Duration::from_secs(20)), "unhealthy 5");
    let (_, fine_streak, fine_log) = health_state(&docker, "fine");
    let (_, sick_streak, sick_log) = health_state(&docker, "sick");
    assert_eq!(fine_streak, 0);
    assert!(sick_streak >= 5, "{sick_streak}");

    docker.world.daemon.kill();
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    docker.world.daemon.spawn();
    // Right away, before any new probe could change it: the state as it was.
    let (status, streak, log) = health_state(&docker, "fine");
    assert_eq!((status.as_str(), streak), ("healthy", 0), "{}", docker.world.daemon.log());
    assert!(log.contains(fine_log.last().unwrap()), "the log was lost: {fine_log:?} then {log:?}");
    let (status, streak, log) = health_state(&docker, "sick");
    assert_eq!(status, "unhealthy", "an unhealthy container must stay unhealthy until a probe passes");
    assert!(streak >= sick_streak, "the streak went from {sick_streak} to {streak}");
    assert_eq!(log.len(), 5, "{log:?}");
    assert!(log.contains(sick_log.last().unwrap()), "the log was lost: {sick_log:?} then {log:?}");
    assert!(inspect(&docker, "sick", "{{.State.Status}}") == "running" && ps_status(&docker, "sick").ends_with("(unhealthy)"));

    // The checkers carry on: new results after the kill, and each turns on its probe.
    let newest = |name: &str| health_state(&docker, name).2.last().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (newest("fine") < killed_at || newest("sick") < killed_at) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(newest("fine") > killed_at && newest("sick") > killed_at, "no probe since the restart");
    assert!(health_state(&docker, "sick").1 > sick_streak, "the streak did not carry on");
    docker.docker(&["exec", "sick", "sh", "-c", ": > /tmp/well"]).ok();
    assert_eq!(wait_for(&docker, "sick", STATUS, "healthy", Duration::from_secs(10)), "healthy");
    docker.docker(&["exec", "fine", "sh", "-c", ": > /tmp/sick"]).ok();
    assert_eq!(wait_for(&docker, "fine", STATUS, "unhealthy", Duration::from_secs(10)), "unhealthy");

    // A stop and a start: `starting` again with no streak, the log kept, as dockerd does.
    docker.docker(&["stop", "-t", "1", "fine"]).ok();
    assert_eq!(health_state(&docker, "fine").0, "unhealthy");
    docker.world.daemon.kill();
    docker.world.daemon.spawn();
    let (status, _, log) = health_state(&docker, "fine");
    assert_eq!((status.as_str(), log.len()), ("unhealthy", 5), "a stopped container's health after the restart");
    docker.docker(&["start", "fine"]).ok();
    let reset = wait_for(&docker, "fine", "{{.State.Health.Status}} {{.State.Health.FailingStreak}} {{len .State.Health.Log}}", "starting 0 5", Duration::from_millis(800));
    assert_eq!(reset, "starting 0 5", "the start did not reset the health (the first probe comes 1 s after it)");
    docker.docker(&["rm", "-f", "fine", "sick"]).ok();
}
