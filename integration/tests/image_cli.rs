//! `berthctl local pull/images/df/save/load/rmi` against the real registry, run inside the test's
//! network namespace.
use std::process::Command;
use std::time::Duration;

use berth_integration::bins::bin_path;
use berth_integration::command::{run_command, CmdOutput};
use berth_integration::images::{Layer, LayerBuilder, TestImage};
use berth_integration::registry::{Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

fn berthctl(registry: &Registry, dir: &TempDir, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", registry.netns.path()))
        .arg(bin_path("berthctl"))
        .arg("local")
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(args);
    run_command(cmd, Duration::from_secs(60))
}

#[test]
fn berthctl_pulls_lists_and_removes_images() {
    let registry = Registry::start(Auth::None);
    let image = TestImage::new(vec![Layer::gzip(LayerBuilder::new().busybox())]);
    let pushed = image.push(&registry, "test/cli", "v1");
    let dir = TempDir::new("cli");
    std::fs::write(dir.path().join("config.toml"), format!("[registry.\"{ADDRESS}\"]\ninsecure = true\n")).unwrap();
    let reference = format!("{ADDRESS}/test/cli:v1");
    let pulled = berthctl(&registry, &dir, &["pull", "--quiet", &reference]).ok();
    assert!(pulled.stdout.contains(&pushed.config_digest), "{pulled}");
    let listed = berthctl(&registry, &dir, &["images"]).ok();
    assert!(listed.stdout.contains(&reference) && listed.stdout.contains(&pushed.config_digest[7..19]), "{listed}");
    let usage = berthctl(&registry, &dir, &["df"]).ok();
    assert!(!usage.stdout.starts_with("0 bytes"), "{usage}");
    let archive = dir.path().join("saved.tar").display().to_string();
    berthctl(&registry, &dir, &["save", "-o", &archive, &reference]).ok();
    berthctl(&registry, &dir, &["rmi", &reference]).ok();
    let loaded = berthctl(&registry, &dir, &["load", "-i", &archive]).ok();
    assert!(loaded.stdout.contains(&format!("Loaded: {} {reference}", pushed.config_digest)), "{loaded}");
    let removed = berthctl(&registry, &dir, &["rmi", &reference]).ok();
    assert!(removed.stdout.contains(&format!("Deleted: {}", pushed.config_digest)), "{removed}");
    let listed = berthctl(&registry, &dir, &["images"]).ok();
    assert_eq!(listed.stdout.lines().count(), 1, "only the header is left: {listed}");
    let missing = berthctl(&registry, &dir, &["rmi", &reference]).failed();
    assert!(missing.stderr.contains("not found"), "{missing}");
}
