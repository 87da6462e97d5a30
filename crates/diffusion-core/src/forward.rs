//! The forward process `q(x_t | x_0)` in closed form, and the training-time draw of `t`.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::{NoiseRng, NoiseSchedule};

/// Looks up a per-timestep table at each batch element's timestep, ready to broadcast
/// against images.
///
/// The table is uploaded and gathered on the device, so `t` is never read back to the host
/// (no synchronisation in the training step).
///
/// # Shapes
/// - `t`: `[batch]`, each in `0..table.len()`
/// - returns: `[batch, 1, 1, 1]`
pub fn gather_per_timestep<B: Backend>(table: &[f64], t: Tensor<B, 1, Int>) -> Tensor<B, 4> {
    let device = t.device();
    let [batch] = t.dims();
    let values: Vec<f32> = table.iter().map(|v| *v as f32).collect();
    let table = Tensor::<B, 1>::from_data(TensorData::new(values, [table.len()]), &device);
    table.select(0, t).reshape([batch, 1, 1, 1])
}

/// Draws `x_t ~ q(x_t | x_0)`: `x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise`,
/// one timestep per batch element (diffusers' `add_noise`).
///
/// # Shapes
/// - `x0`, `noise`: `[batch, channels, height, width]`
/// - `t`: `[batch]`, each in `0..T`
/// - returns: `[batch, channels, height, width]`
pub fn q_sample<B: Backend>(
    schedule: &NoiseSchedule,
    x0: Tensor<B, 4>,
    noise: Tensor<B, 4>,
    t: Tensor<B, 1, Int>,
) -> Tensor<B, 4> {
    let signal = gather_per_timestep(schedule.sqrt_alpha_bar(), t.clone()); // [batch, 1, 1, 1]
    let noise_scale = gather_per_timestep(schedule.sqrt_one_minus_alpha_bar(), t); // [batch, 1, 1, 1]
    x0 * signal + noise * noise_scale
}

/// Draws `batch` training timesteps uniformly from `0..T` on the host and uploads them.
///
/// # Shapes
/// - returns: `[batch]`
pub fn sample_timesteps<B: Backend>(
    rng: &mut NoiseRng,
    batch: usize,
    schedule: &NoiseSchedule,
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    timesteps_tensor(&rng.timesteps(batch, schedule.num_timesteps()), device)
}

/// Uploads host timesteps as an integer tensor.
///
/// # Shapes
/// - returns: `[timesteps.len()]`
pub fn timesteps_tensor<B: Backend>(timesteps: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = timesteps.iter().map(|t| *t as i64).collect();
    Tensor::from_data(TensorData::new(values, [timesteps.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;
    use crate::tests::{TestBackend, to_vec};

    #[test]
    fn gather_picks_each_elements_own_timestep() {
        let device = Default::default();
        let table = [0.5, 1.5, 2.5, 3.5];
        let t = timesteps_tensor::<TestBackend>(&[3, 0, 2], &device);
        let gathered = gather_per_timestep(&table, t);
        assert_eq!(gathered.dims(), [3, 1, 1, 1]);
        assert_eq!(to_vec(gathered), vec![3.5, 0.5, 2.5]);
    }

    #[test]
    fn q_sample_matches_the_closed_form_per_element() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let mut rng = NoiseRng::seed_from_u64(0);
        let x0 = rng.gaussian_tensor::<TestBackend, 4>([3, 2, 2, 2], &device);
        let noise = rng.gaussian_tensor::<TestBackend, 4>([3, 2, 2, 2], &device);
        let steps = [0usize, 499, 999];
        let x_t = q_sample(
            &schedule,
            x0.clone(),
            noise.clone(),
            timesteps_tensor(&steps, &device),
        );
        let (x0, noise, x_t) = (to_vec(x0), to_vec(noise), to_vec(x_t));
        for (i, value) in x_t.iter().enumerate() {
            let t = steps[i / 8];
            let expected = schedule.sqrt_alpha_bar()[t] * x0[i] as f64
                + schedule.sqrt_one_minus_alpha_bar()[t] * noise[i] as f64;
            assert!((*value as f64 - expected).abs() < 1e-5, "i={i}");
        }
    }

    #[test]
    fn q_sample_preserves_unit_variance() {
        // Variance preserving: unit-variance x0 and noise give unit-variance x_t at every t.
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let mut rng = NoiseRng::seed_from_u64(9);
        let n = 8192;
        let x0 = rng.gaussian_tensor::<TestBackend, 4>([n, 1, 1, 1], &device);
        let noise = rng.gaussian_tensor::<TestBackend, 4>([n, 1, 1, 1], &device);
        let t = timesteps_tensor::<TestBackend>(&vec![300; n], &device);
        let x_t = to_vec(q_sample(&schedule, x0, noise, t));
        let var = x_t.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
        // Standard error of the variance is sqrt(2/n) = 0.016.
        assert!((var - 1.0).abs() < 0.08, "var {var}");
    }

    #[test]
    fn sampled_timesteps_are_in_range_and_seeded() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().with_num_timesteps(50).init().unwrap();
        let draw = |seed| {
            let mut rng = NoiseRng::seed_from_u64(seed);
            sample_timesteps::<TestBackend>(&mut rng, 64, &schedule, &device)
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap()
        };
        let a = draw(1);
        assert_eq!(a.len(), 64);
        assert!(a.iter().all(|t| (0..50).contains(t)));
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
    }
}
