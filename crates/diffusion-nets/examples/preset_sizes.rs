//! Prints parameter count and MACs per image of every preset: `cargo run -p diffusion-nets --example preset_sizes`.

use burn::module::Module;
use diffusion_nets::UNetConfig;

fn main() -> Result<(), diffusion_nets::NetError> {
    for name in UNetConfig::preset_names() {
        let config = UNetConfig::preset(name)?;
        let params = config
            .init::<burn::backend::Flex>(&Default::default())?
            .num_params();
        let macs = config.macs_per_image()? as f64 / 1e9;
        println!("{name:<16} {params:>12} params {macs:>8.3} GMACs/image");
    }
    Ok(())
}
