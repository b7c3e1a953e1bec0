//! The recorded run shipped in assets/ replays and inspects with no training: the
//! story a new user sees first (a plateau, a change point, a rule-driven phase switch).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

fn asset() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/parity-story")
}

#[test]
fn recorded_story_replays_headless() {
    let out = Command::new(BIN).args(["replay", "--headless"]).arg(asset()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let story = String::from_utf8_lossy(&out.stdout);
    for needle in ["search", "fit", "changepoint", "val_loss", "completed"] {
        assert!(story.contains(needle), "story lacks {needle:?}:\n{story}");
    }
}

#[test]
fn recorded_story_inspects_clean_with_a_rule_switch() {
    let out = Command::new(BIN).args(["inspect", "--json"]).arg(asset()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["status"], "completed");
    assert_eq!(s["corrupt_records"], 0);
    let phases = s["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{phases:?}");
    assert_eq!(phases[1]["name"], "fit");
    assert_eq!(phases[1]["cause"], "rule");
    assert!(s["last_step"].as_u64().unwrap() >= 3000);
    let signals = s["signals"].as_array().unwrap();
    assert!(signals.iter().any(|g| g["detector"] == "changepoint" && g["metric"] == "val_loss"));
    assert!(s["metrics"].as_array().unwrap().iter().any(|m| m == "mlp.0/eff_rank"), "probe metrics recorded");
}

/// `phasetop inspect RUN | head` must not panic when the reader goes away.
#[test]
fn report_commands_die_quietly_on_a_closed_pipe() {
    // A replay whose stdout is not a terminal prints the headless story too.
    for args in [&["inspect"][..], &["replay", "--headless"][..], &["replay"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN).args(args).arg(asset()).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
}

/// Issue 26: the CLI edges behave as the ecosystem expects — `-o -` is stdout, `-o DIR/`
/// writes `DIR/<run id>.<ext>`, a ROOT that does not exist is an error, and every shipped
/// config passes `check` after the README's set-up.
#[test]
fn cli_edges_behave_as_the_ecosystem_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["export", "--format", "csv", "-o", "-"])
        .arg(asset())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("step,phase,"), "the csv on stdout");
    assert!(!tmp.path().join("-").exists(), "no file named -");
    let out = Command::new(BIN).args(["export", "--format", "tfevents", "-o", "-"]).arg(asset()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tmp.path().join("out/");
    let out = Command::new(BIN).args(["export", "--format", "jsonl", "-o"]).arg(&dir).arg(asset()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("parity-story.jsonl").is_file(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = Command::new(BIN).args(["ls"]).arg(tmp.path().join("nonexistent")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "ls of a missing ROOT: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"));
    // Without a ROOT, a missing runs/ is no runs yet.
    let out = Command::new(BIN).arg("ls").current_dir(tmp.path()).output().unwrap();
    assert!(out.status.success());
    // A replay speed is one of the replay's own, never silently another (50 was 30×).
    let out = Command::new(BIN).args(["replay", "--headless", "--speed", "50"]).arg(asset()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one of 0.25"), "{out:?}");
    let out = Command::new(BIN).args(["replay", "--headless", "--speed", "30"]).arg(asset()).output().unwrap();
    assert!(out.status.success());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let configs: Vec<_> = std::fs::read_dir(root.join("configs"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(configs.len() >= 5);
    let out = Command::new(BIN).arg("check").args(&configs).current_dir(root).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
