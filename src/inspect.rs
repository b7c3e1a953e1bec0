//! TEMPORARY STUB (the lead's, so the crate builds): helper-1 replaces this file.
use crate::event::Event;
use std::path::Path;
#[derive(serde::Serialize)]
pub struct Summary {
    pub status: String,
    pub last_step: u64,
    pub checkpoints: Vec<u64>,
    pub phases: Vec<serde_json::Value>,
}
impl Summary {
    pub fn load(p: &Path) -> anyhow::Result<Summary> {
        let c = crate::runlog::read_all(p)?;
        let mut s = Summary {
            status: "unknown".into(),
            last_step: 0,
            checkpoints: vec![],
            phases: vec![],
        };
        for r in c.records {
            match r.event {
                Event::Step { step, .. } => s.last_step = step,
                Event::Checkpoint { step, .. } => s.checkpoints.push(step),
                Event::PhaseChanged { to, .. } => s.phases.push(serde_json::json!({"name": to})),
                Event::RunEnded { status, .. } => s.status = status.as_str().into(),
                _ => {}
            }
        }
        Ok(s)
    }
    pub fn with_live(self, _l: bool) -> Self {
        self
    }
    pub fn render_text(&self) -> String {
        format!("{} {}\n", self.status, self.last_step)
    }
}
