//! Learning rate inside a phase as a function of the steps already taken in it. An
//! optional linear warmup (`warmup_steps`) precedes every shape.

use crate::config::{Phase, ScheduleKind};

pub fn lr_at(phase: &Phase, base: f64, k: u64) -> f64 {
    let w = phase.warmup_steps();
    if k < w {
        return base * (k + 1) as f64 / w as f64;
    }
    let min = phase.min_lr();
    let k = k - w;
    match phase.schedule() {
        ScheduleKind::Constant | ScheduleKind::Warmup => base,
        ScheduleKind::Cosine => {
            let span = phase.steps().unwrap_or(1).saturating_sub(w).max(1);
            let x = (k.min(span) as f64) / span as f64;
            min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
        }
        ScheduleKind::Cooldown => {
            let span = phase.steps().unwrap_or(1).saturating_sub(w).max(1);
            let x = (k.min(span) as f64) / span as f64;
            base + (min - base) * x
        }
        ScheduleKind::Cyclical => {
            // Triangular: min → base over the first half of each cycle, back to min.
            let cycle = phase.cycle_steps().max(2);
            let pos = k % cycle;
            let half = cycle / 2;
            let frac = if pos < half { pos as f64 / half as f64 } else { (cycle - pos) as f64 / (cycle - half) as f64 };
            min + (base - min) * frac
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(extra: &str) -> Phase {
        let src = format!(
            "[run]\nname='t'\nmax_steps=10\n[task]\nkind='parity'\n[model]\nkind='mlp'\n\
             [[phase]]\nname='p'\noptimizer='sgd'\nlr=1.0\nbatch_size=4\n{extra}"
        );
        crate::config::parse("t.toml", &src).unwrap().phases.remove(0)
    }

    #[test]
    fn cosine_goes_from_base_to_min() {
        let p = phase("steps=100\nschedule='cosine'\nmin_lr=0.1");
        assert!((lr_at(&p, 1.0, 0) - 1.0).abs() < 1e-12);
        assert!((lr_at(&p, 1.0, 50) - 0.55).abs() < 1e-12);
        assert!((lr_at(&p, 1.0, 100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn warmup_ramps_linearly_then_holds() {
        let p = phase("schedule='warmup'\nwarmup_steps=4");
        let lrs: Vec<f64> = (0..6).map(|k| lr_at(&p, 1.0, k)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cyclical_is_triangular() {
        let p = phase("schedule='cyclical'\ncycle_steps=4\nmin_lr=0.0");
        let lrs: Vec<f64> = (0..9).map(|k| lr_at(&p, 1.0, k)).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 0.5, 0.0, 0.5, 1.0, 0.5, 0.0]);
    }

    #[test]
    fn cooldown_is_linear_to_min() {
        let p = phase("steps=10\nschedule='cooldown'\nmin_lr=0.0");
        assert!((lr_at(&p, 1.0, 5) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(&p, 1.0, 10), 0.0);
    }
}
