//! Trains a preset into a run directory on the CPU, printing one line per logged step: the
//! library API without the CLI.
//!
//! `cargo run --release -p diffusion-train --example train_preset -- mnist runs/mnist`
//! (a third argument overrides `max_steps`). Runs that already hold checkpoints are resumed.

use std::sync::atomic::AtomicBool;

use diffusion_train::{StepProgress, TrainConfig, TrainEvent, TrainObserver, Trainer};

type B = burn::backend::Autodiff<burn::backend::Flex>;

struct Print {
    log_every: usize,
}

impl TrainObserver for Print {
    fn on_step(&mut self, p: &StepProgress) {
        if p.step.is_multiple_of(self.log_every) {
            println!(
                "step {}/{} loss {:.4} grad_norm {:.3} lr {:.2e} {:.1} img/s",
                p.step, p.total_steps, p.loss, p.grad_norm, p.lr, p.images_per_sec
            );
        }
    }

    fn on_event(&mut self, event: &TrainEvent) {
        println!("{event:?}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map_or("mnist", String::as_str);
    let run_dir = args.get(1).map_or("runs/mnist", String::as_str);
    let mut config = TrainConfig::preset(preset)?;
    if let Some(steps) = args.get(2) {
        config = config
            .with_max_steps(Some(steps.parse()?))
            .with_epochs(None);
    }
    let mut observer = Print {
        log_every: config.log_every,
    };
    let stop = AtomicBool::new(false);
    let summary = Trainer::<B>::new(config, run_dir, Default::default())
        .resume(true)
        .run(&stop, &mut observer)?;
    println!("{summary:?}");
    Ok(())
}
