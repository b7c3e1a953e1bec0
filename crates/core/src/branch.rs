//! `phasetop branch`: a new run started from another run's checkpoint, optionally with a
//! changed plan or an immediate phase switch ("what if I had switched at step 3000?").
//! This module only plans and validates; `host::branch` builds and runs the child.

use crate::config::{self, ConfigError, LoadedConfig};
use crate::error::UsageError;

use crate::checkpoints::{self as checkpoint, CheckpointMeta};
use crate::rundir::{ParentRef, RunDir};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// How to start a branch: a new run directory whose trainer starts from another run's
/// checkpoint (planned and validated by `crate::branch`).
pub struct BranchRun {
    pub config: LoadedConfig,
    /// `run.json`'s `config_name` and `source_path` (the parent's, unless `--config`).
    pub config_name: String,
    pub source_path: Option<String>,
    pub run_dir: PathBuf,
    pub parent: ParentRef,
    /// The parent's checkpoint directory and the checkpoint in it (its `phase_index`
    /// already mapped onto `config`'s plan).
    pub parent_checkpoints: PathBuf,
    pub checkpoint: CheckpointMeta,
    pub seed: u64,
    pub max_steps: u64,
    /// Switch to this phase at `switch_at`.
    pub switch: Option<usize>,
    /// The step `--at` named: the checkpoint's step or later. A switch there past the
    /// checkpoint first trains on with the parent's plan (deterministic: those steps
    /// repeat the parent's), so it happens where it was asked for.
    pub switch_at: u64,
}

#[derive(Clone)]
pub struct BranchArgs {
    pub parent: PathBuf,
    pub at: u64,
    pub config: Option<PathBuf>,
    pub switch: Option<String>,
    pub run_dir: Option<PathBuf>,
    pub max_steps: Option<u64>,
    /// The parent's checkpoint to start from, exactly (the hidden `--from-checkpoint`):
    /// the dashboard path pins the one it planned with, so the background host cannot
    /// pick a newer one a live parent wrote meanwhile. `None`: the latest at or before `at`.
    pub from_checkpoint: Option<u64>,
}

impl BranchArgs {
    /// The arguments of the background host that runs this branch for the dashboard:
    /// the operator's own (`--at` is STEP as asked, never the checkpoint's step), plus
    /// `--headless` and what `plan` chose (checkpoint, directory, end), so the host's
    /// `plan` of them is this one. Both paths then build the child by the same code.
    pub fn host_args(&self, planned: &Planned) -> Vec<std::ffi::OsString> {
        let pinned = BranchArgs {
            from_checkpoint: Some(planned.run.checkpoint.step),
            run_dir: Some(planned.run.run_dir.clone()),
            max_steps: Some(planned.run.max_steps),
            ..self.clone()
        };
        pinned.cli_args()
    }

    /// These arguments as the training host's command line (`branch PARENT --at STEP
    /// --headless …`).
    pub fn cli_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["branch".into(), self.parent.clone().into()];
        a.extend(["--at".into(), self.at.to_string().into(), "--headless".into()]);
        if let Some(step) = self.from_checkpoint {
            a.extend(["--from-checkpoint".into(), step.to_string().into()]);
        }
        if let Some(dir) = &self.run_dir {
            a.extend(["--run-dir".into(), dir.clone().into()]);
        }
        if let Some(m) = self.max_steps {
            a.extend(["--max-steps".into(), m.to_string().into()]);
        }
        if let Some(c) = &self.config {
            a.extend(["--config".into(), c.clone().into()]);
        }
        if let Some(p) = &self.switch {
            a.extend(["--switch".into(), p.into()]);
        }
        a
    }
}

/// A validated branch: what the host needs, and what to tell the operator first.
pub struct Planned {
    pub run: BranchRun,
    pub notes: Vec<String>,
}

/// Resolves the checkpoint, the child's config, phase and directory. Every refusal is a
/// usage or config error (exit code 2) and nothing is written.
pub fn plan(args: &BranchArgs) -> Result<Planned> {
    let parent = RunDir::open(&args.parent).map_err(|e| UsageError(format!("{e:#}")))?;
    let meta = parent.read_meta()?;
    let mut notes = Vec::new();
    let list = checkpoint::list(&parent.checkpoints());
    let mut ck = match args.from_checkpoint {
        Some(step) => list.iter().find(|c| c.step == step && c.step <= args.at).cloned().ok_or_else(|| {
            UsageError(format!("{}: no checkpoint at step {step} at or before {}", args.parent.display(), args.at))
        })?,
        None => pick_checkpoint(&list, args.at, &args.parent)?,
    };
    if ck.step != args.at && args.switch.is_some() {
        notes.push(format!(
            "no checkpoint at step {}: starting from the nearest before it, step {}, and training on with the \
             parent's plan (those steps repeat the parent's) to switch at step {}",
            args.at, ck.step, args.at
        ));
    } else if ck.step != args.at {
        notes
            .push(format!("no checkpoint at step {}: branching from the nearest before it, step {}", args.at, ck.step));
    }
    let mut parent_cfg = config::load(&parent.config())?;
    meta.legacy_init(&mut parent_cfg.config);
    let (loaded, config_name, source_path) = match &args.config {
        Some(p) => {
            let mut loaded = config::load(p)?;
            meta.legacy_init(&mut loaded.config);
            same_task_and_model(&loaded, &parent_cfg, &parent.config())?;
            let (name, source) = (loaded.name(), p.canonicalize().ok().map(|p| p.display().to_string()));
            (loaded, name, source)
        }
        // No source to watch: the parent's config.toml belongs to the parent (its plan edits
        // are not the child's).
        None => (parent_cfg, meta.config_name.clone(), None),
    };
    let cfg = &loaded.config;
    let phases = cfg.phase_names().join(", ");
    // A changed plan may put the checkpoint's phase at another index; the name is what counts.
    ck.phase_index = cfg.phase_index(&ck.phase).ok_or_else(|| {
        UsageError(format!(
            "the checkpoint at step {} is in phase \"{}\", which the new plan lacks (phases: {phases})",
            ck.step, ck.phase
        ))
    })?;
    let switch = match &args.switch {
        None => None,
        Some(name) => match cfg.phase_index(name) {
            None => {
                return Err(UsageError(format!("--switch: unknown phase \"{name}\", expected one of {phases}")).into());
            }
            Some(i) if i == ck.phase_index => {
                return Err(UsageError(format!(
                    "--switch: the checkpoint at step {} is already in phase \"{name}\"; pick another of {phases}",
                    ck.step
                ))
                .into());
            }
            Some(i) => Some(i),
        },
    };
    let max_steps = match (args.max_steps, &args.config) {
        (Some(m), _) => m,
        (None, Some(_)) => cfg.max_steps(),
        (None, None) => meta.max_steps,
    };
    let last_needed = if switch.is_some() { args.at } else { ck.step };
    if max_steps <= last_needed {
        return Err(UsageError(format!(
            "max_steps {max_steps} is not past the branch step {last_needed}; pass --max-steps"
        ))
        .into());
    }
    // The child is named for the step where it leaves the parent's path: STEP itself
    // with a --switch (it repeats the parent's steps up to there), else the checkpoint's.
    let run_dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => child_path(&parent.path, &meta.run_id, if switch.is_some() { args.at } else { ck.step }),
    };
    let parent_dir = parent.path.canonicalize().with_context(|| format!("cannot resolve {}", parent.path.display()))?;
    Ok(Planned {
        run: BranchRun {
            config: loaded,
            config_name,
            source_path,
            run_dir,
            parent: ParentRef { run_id: meta.run_id, run_dir: parent_dir.display().to_string(), branch_step: ck.step },
            parent_checkpoints: parent.checkpoints(),
            checkpoint: ck,
            seed: meta.seed,
            max_steps,
            switch,
            switch_at: args.at,
        },
        notes,
    })
}

/// The latest checkpoint at or before `at`.
fn pick_checkpoint(list: &[CheckpointMeta], at: u64, parent: &Path) -> Result<CheckpointMeta, UsageError> {
    if let Some(c) = checkpoint::at_or_before(list, at) {
        return Ok(c.clone());
    }
    Err(UsageError(match list.first() {
        Some(first) => format!(
            "{}: no checkpoint at or before step {at}; the earliest is at step {}",
            parent.display(),
            first.step
        ),
        None => format!("{}: the run has no checkpoints to branch from", parent.display()),
    }))
}

/// A branch continues the parent's weights, so what they mean (task, model) must not
/// change; the plan and everything else may.
fn same_task_and_model(new: &LoadedConfig, parent: &LoadedConfig, parent_path: &Path) -> Result<(), ConfigError> {
    use crate::config::as_json as json;
    let (n, p) = (&new.config, &parent.config);
    for (what, span, a, b) in [
        ("[task]", n.task.kind.span(), json(&n.task), json(&p.task)),
        ("[model]", n.model.kind.span(), json(&n.model), json(&p.model)),
    ] {
        if a != b {
            let msg = format!(
                "{what} differs from the parent run's ({}); a branch keeps the parent's task and model",
                parent_path.display()
            );
            return Err(ConfigError::at(&new.path.display().to_string(), &new.source, span.start, msg));
        }
    }
    Ok(())
}

/// `<parent-dir's folder>/<parent-id>-b<step>`, suffixed `-2`, `-3`… when taken.
pub fn child_path(parent: &Path, parent_id: &str, step: u64) -> PathBuf {
    let root = parent.parent().unwrap_or(Path::new("."));
    let base = root.join(format!("{parent_id}-b{step}"));
    if !base.exists() {
        return base;
    }
    (2..).map(|i| root.join(format!("{parent_id}-b{step}-{i}"))).find(|p| !p.exists()).expect("unbounded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ck(step: u64) -> CheckpointMeta {
        CheckpointMeta {
            step,
            phase: "main".into(),
            phase_index: 0,
            phase_start: 0,
            optimizer: "sgd".into(),
            overrides: Default::default(),
            pinned: false,
        }
    }

    #[test]
    fn picks_latest_checkpoint_at_or_before() {
        let list = [ck(20), ck(40), ck(60)];
        let p = Path::new("runs/p");
        assert_eq!(pick_checkpoint(&list, 40, p).unwrap().step, 40);
        assert_eq!(pick_checkpoint(&list, 59, p).unwrap().step, 40);
        assert_eq!(pick_checkpoint(&list, 1000, p).unwrap().step, 60);
        let e = pick_checkpoint(&list, 19, p).unwrap_err().0;
        assert!(e.contains("earliest is at step 20"), "{e}");
        assert!(pick_checkpoint(&[], 5, p).unwrap_err().0.contains("no checkpoints"));
    }

    #[test]
    fn child_path_is_next_to_parent_and_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("run-a");
        assert_eq!(child_path(&parent, "run-a", 40), tmp.path().join("run-a-b40"));
        std::fs::create_dir(tmp.path().join("run-a-b40")).unwrap();
        assert_eq!(child_path(&parent, "run-a", 40), tmp.path().join("run-a-b40-2"));
    }
}
