//! TEMPORARY STUB (the lead's, so the crate builds): helper-1 replaces this file.
use crate::event::Event;
use std::path::Path;
#[derive(serde::Serialize, Clone)]
pub struct PhaseRow {
    pub name: String,
}
#[derive(serde::Serialize, Clone)]
pub struct Summary {
    pub config_name: String,
    pub status: String,
    pub last_step: u64,
    pub checkpoints: Vec<u64>,
    pub phases: Vec<PhaseRow>,
}
impl Summary {
    pub fn load(p: &Path) -> anyhow::Result<Summary> {
        let c = crate::runlog::read_all(p)?;
        let mut s = Summary {
            config_name: String::new(),
            status: "unknown".into(),
            last_step: 0,
            checkpoints: vec![],
            phases: vec![],
        };
        for r in c.records {
            match r.event {
                Event::Step { step, .. } => s.last_step = step,
                Event::Checkpoint { step, .. } => s.checkpoints.push(step),
                Event::PhaseChanged { to, .. } => s.phases.push(PhaseRow { name: to }),
                Event::RunEnded { status, .. } => s.status = status.as_str().into(),
                _ => {}
            }
        }
        Ok(s)
    }
    pub fn with_live(mut self, l: bool) -> Self {
        if l && self.status == "unknown" {
            self.status = "running".into();
        }
        self
    }
    pub fn render_text(&self) -> String {
        format!("{} {}\n", self.status, self.last_step)
    }
}
