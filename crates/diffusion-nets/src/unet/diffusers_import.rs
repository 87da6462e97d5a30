//! Loading the weights of a diffusers `UNet2DModel` (a state dict already read into memory,
//! e.g. from safetensors) into a [`UNet`] built from the matching [`crate::UNetConfig`].
//!
//! Names are diffusers' with three differences in burn: group norms call their affine
//! parameters `gamma`/`beta` (diffusers `weight`/`bias`), `to_out` is a plain linear
//! (diffusers `to_out.0`), and linear weights are stored `[in, out]` (PyTorch `[out, in]`).
//! With `time_injection = scale-shift` and attention, diffusers drops the group norm of the
//! middle attention block: `UNetConfig::from_diffusers_config` then sets
//! `mid_attention_norm = Some(false)`, and the block is built without it.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::model::UNet;
use crate::NetError;

/// A diffusers state dict: parameter name -> values in PyTorch layout.
pub type DiffusersState = BTreeMap<String, TensorData>;

/// The diffusers name of a parameter at `path`, and whether its tensor is transposed.
fn diffusers_name(path: &[(String, String)]) -> (String, bool) {
    let names: Vec<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
    let (leaf, parent_type) = match path.last() {
        Some((leaf, parent)) => (leaf.as_str(), parent.as_str()),
        None => return (String::new(), false),
    };
    let mut name = names[..names.len() - 1].join(".");
    let is_linear = parent_type == "Struct:Linear";
    if is_linear && names.len() >= 2 && names[names.len() - 2] == "to_out" {
        name.push_str(".0");
    }
    let leaf = match (parent_type, leaf) {
        ("Struct:GroupNorm", "gamma") => "weight",
        ("Struct:GroupNorm", "beta") => "bias",
        (_, other) => other,
    };
    if !name.is_empty() {
        name.push('.');
    }
    name.push_str(leaf);
    (name, is_linear && leaf == "weight")
}

struct Loader<'a> {
    state: &'a DiffusersState,
    path: Vec<(String, String)>,
    used: BTreeSet<String>,
    missing: Vec<String>,
    errors: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let (name, transposed) = diffusers_name(&self.path);
        let Some(data) = self.state.get(&name) else {
            self.missing.push(name);
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.used.insert(name.clone());
        let mut want = tensor.dims().to_vec();
        if transposed {
            want.reverse();
        }
        if data.shape.as_slice() != want.as_slice() {
            self.errors.push(format!(
                "`{name}` has shape {:?}, the network expects {want:?}",
                data.shape.as_slice()
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let device = tensor.device();
        let mut loaded = Tensor::<B, D>::from_data(data.clone(), &device);
        if transposed {
            loaded = loaded.swap_dims(0, 1);
        }
        if tensor.is_require_grad() {
            loaded = loaded.require_grad();
        }
        Param::from_mapped_value(id, loaded, mapper)
    }
}

impl<B: Backend> UNet<B> {
    /// Replaces every parameter by the tensor of the same diffusers name in `state`.
    /// Fails, naming the parameters, when one is missing, has another shape, or when
    /// `state` holds parameters the network does not have.
    pub fn load_diffusers_state(self, state: &DiffusersState) -> Result<Self, NetError> {
        let mut loader = Loader {
            state,
            path: vec![],
            used: BTreeSet::new(),
            missing: vec![],
            errors: vec![],
        };
        let net = self.map(&mut loader);
        let unused = state.keys().filter(|k| !loader.used.contains(*k));
        loader
            .errors
            .extend(unused.map(|k| format!("`{k}` has no counterpart in the network")));
        if !loader.missing.is_empty() {
            let shown: Vec<&str> = loader.missing.iter().take(5).map(String::as_str).collect();
            loader.errors.push(format!(
                "{} parameter(s) missing from the state dict: {}{}",
                loader.missing.len(),
                shown.join(", "),
                if loader.missing.len() > 5 { ", .." } else { "" }
            ));
        }
        if loader.errors.is_empty() {
            return Ok(net);
        }
        let shown: Vec<&str> = loader.errors.iter().take(5).map(String::as_str).collect();
        Err(NetError::Import(format!(
            "{} problem(s): {}",
            loader.errors.len(),
            shown.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UNetConfig;
    use crate::tests::TestBackend;
    use burn::tensor::Int;
    use serde_json::Value;

    fn tensor_data(v: &Value) -> TensorData {
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
        let data: Vec<f32> = serde_json::from_value(v["data"].clone()).unwrap();
        TensorData::new(data, shape)
    }

    /// Runs a golden case of scripts/make_forward_golden.py: diffusers weights, inputs and
    /// output (float64) of a tiny `UNet2DModel`.
    fn check_golden(json: &str) {
        let golden: Value = serde_json::from_str(json).unwrap();
        let config: UNetConfig = serde_json::from_value(golden["config"].clone()).unwrap();
        let device = Default::default();
        let state: DiffusersState = golden["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, v)| (name.clone(), tensor_data(v)))
            .collect();
        let net = config
            .init::<TestBackend>(&device)
            .unwrap()
            .load_diffusers_state(&state)
            .unwrap();
        let x = Tensor::<TestBackend, 4>::from_data(tensor_data(&golden["x"]), &device);
        let t: Vec<i64> = serde_json::from_value(golden["timesteps"].clone()).unwrap();
        let t = Tensor::<TestBackend, 1, Int>::from_data(t.as_slice(), &device);
        let labels: Option<Vec<i64>> = serde_json::from_value(golden["labels"].clone()).unwrap();
        let labels =
            labels.map(|l| Tensor::<TestBackend, 1, Int>::from_data(l.as_slice(), &device));
        let out = net.try_forward(x, t, labels).unwrap();
        let want = tensor_data(&golden["out"]);
        assert_eq!(out.dims().to_vec(), want.shape.to_vec());
        let got = out.into_data().to_vec::<f32>().unwrap();
        let want = want.to_vec::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "worst relative error {worst}");
    }

    #[test]
    fn matches_diffusers_attention_conditional() {
        check_golden(include_str!(
            "../../assets/golden/unet_attention_conditional.json"
        ));
    }

    #[test]
    fn matches_diffusers_residual_scale_shift() {
        check_golden(include_str!(
            "../../assets/golden/unet_residual_scale_shift.json"
        ));
    }

    #[test]
    fn mismatched_state_is_an_error_naming_parameters() {
        let device = Default::default();
        let config = UNetConfig::new(1, 8)
            .with_base_channels(4)
            .with_channel_mults(vec![1, 2])
            .with_num_res_blocks(1)
            .with_attention_resolutions(vec![])
            .with_norm_groups(2);
        let net = config.init::<TestBackend>(&device).unwrap();
        let mut state = DiffusersState::new();
        state.insert(
            "conv_in.weight".into(),
            TensorData::new(vec![0.0f32; 4 * 9], [4, 1, 3, 3]),
        );
        state.insert("conv_in.bias".into(), TensorData::new(vec![0.0f32; 5], [5]));
        state.insert("bogus.weight".into(), TensorData::new(vec![0.0f32], [1]));
        let msg = net.load_diffusers_state(&state).unwrap_err().to_string();
        assert!(msg.contains("`conv_in.bias` has shape [5]"), "{msg}");
        assert!(msg.contains("`bogus.weight` has no counterpart"), "{msg}");
        assert!(
            msg.contains("missing from the state dict: time_embedding.linear_1.weight"),
            "{msg}"
        );
    }
}
