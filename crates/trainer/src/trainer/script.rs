//! `[model] kind = "torchscript"`: a module saved from PyTorch (`torch.jit.script(m)` or
//! `torch.jit.trace(m, x)`, then `.save(path)`), trained by phasetop's own optimizers.
//!
//! tch's `CModule::named_parameters` hands back tensors that share the module's own
//! parameters (the same `TensorImpl`), so the trainer binds them into its flat store
//! like any built-in model's (`set_data` to a view of the store: the module then
//! computes with the store's memory, and autograd accumulates into its gradient row).
//! tch's `TrainableCModule` is not used: it only registers the parameters in a
//! `VarStore`, under mangled names, for tch's optimizers, which phasetop does not use.
//! Buffers (batch norm's running statistics) are not exposed by tch; a few lines of C++
//! (`script_shim.cpp`, built by build.rs) list them, so checkpoints hold them.
//!
//! Probes: a method `features(x) -> Dict[str, Tensor]` (`@torch.jit.export`) names the
//! probe-able layers (its keys, in its order); without one, the output is the one layer,
//! `output`.

use super::model::Feature;
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char, c_void};
use tch::{CModule, Device, IValue, Kind, Tensor};

/// The one probe-able layer of a module without a `features` method.
pub const OUTPUT_LAYER: &str = "output";

pub struct ScriptModel {
    /// The module's file, named in every error.
    path: String,
    module: RefCell<CModule>,
    /// Whether the module is in training mode (switched only when it changes).
    training: Cell<bool>,
    has_features: bool,
    layers: Vec<String>,
}

/// A loaded module, checked against the task: its trainable parameters and buffers by
/// name (each shares the module's tensor).
pub struct Loaded {
    pub model: ScriptModel,
    pub params: Vec<(String, Tensor)>,
    pub buffers: Vec<(String, Tensor)>,
}

unsafe extern "C" {
    fn phasetop_named_buffers(
        module: *mut c_void,
        data: *mut c_void,
        f: extern "C" fn(*mut c_void, *const c_char, *mut c_void),
    ) -> *mut c_char;
}

extern "C" fn add_tensor(data: *mut c_void, name: *const c_char, tensor: *mut c_void) {
    // SAFETY: `data` is the Vec passed below; `tensor` a new handle the callee gave up.
    let v = unsafe { &mut *(data as *mut Vec<(String, Tensor)>) };
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    v.push((name, unsafe { Tensor::from_ptr(tensor.cast()) }));
}

// `CModule` is one pointer (`torch::jit::Module*`) in a struct with no other field;
// equal sizes make that pointer the whole struct (offset 0), which `named_buffers` reads.
const _: () = assert!(std::mem::size_of::<CModule>() == std::mem::size_of::<*mut c_void>());

/// The module's buffers by name (sharing the module's tensors).
fn named_buffers(m: &CModule) -> Result<Vec<(String, Tensor)>, String> {
    // SAFETY: see the size assertion above; the pointer stays valid while `m` lives.
    let ptr = unsafe { *(m as *const CModule as *const *mut c_void) };
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let err = unsafe { phasetop_named_buffers(ptr, &mut out as *mut _ as *mut c_void, add_tensor) };
    if err.is_null() {
        return Ok(out);
    }
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { libc::free(err as *mut c_void) };
    Err(msg)
}

/// libtorch's message, first line (its C++ backtraces follow). For an error raised in
/// the TorchScript interpreter, whose first line only says so, the line that gives the
/// reason (`RuntimeError: …`) after the script's traceback.
fn first_line(e: &tch::TchError) -> String {
    let s = e.to_string();
    let s = s.strip_prefix("Internal torch error: ").unwrap_or(&s).to_string();
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("").to_string();
    if first.contains("failed in the TorchScript interpreter")
        && let Some(why) = lines.find(|l| {
            l.split_once(": ").is_some_and(|(kind, _)| {
                !kind.is_empty()
                    && (kind.ends_with("Error") || kind.ends_with("Exception"))
                    && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            })
        })
    {
        return format!("{why} (raised in the TorchScript interpreter)");
    }
    first
}

/// Ends the training step with `message` as the run's failure: unwound without the
/// panic hook (no "panicked at …" and no backtrace), caught by the host's
/// `catch_unwind`, which ends the run as failed with this message.
fn fail(message: String) -> ! {
    std::panic::resume_unwind(Box::new(message))
}

impl ScriptModel {
    /// Loads `path` on `device` and checks it against the task: it is a TorchScript
    /// archive, has trainable parameters, `forward` takes `sample` (a few input rows)
    /// and returns `[rows, classes]`, and `features` (if any) returns a dict of
    /// tensors. Errors are plain sentences naming the file (the caller locates them in
    /// the config).
    pub fn load(path: &str, device: Device, sample: &Tensor, classes: usize) -> Result<Loaded, String> {
        // A FIFO would block libtorch's open for ever: a regular file only.
        phasetop_core::files::open_regular(std::path::Path::new(path), "the TorchScript module")?;
        let module = CModule::load_on_device(path, device).map_err(|e| {
            format!(
                "{path}: not a TorchScript archive ({}); save one from PyTorch with \
                 torch.jit.script(model).save(path) or torch.jit.trace(model, example).save(path)",
                first_line(&e)
            )
        })?;
        let all =
            module.named_parameters().map_err(|e| format!("{path}: cannot list its parameters: {}", first_line(&e)))?;
        let (params, fixed): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, t)| t.requires_grad());
        if params.is_empty() {
            return Err(format!(
                "{path}: the module has no trainable parameters ({}), so there is nothing to train",
                if fixed.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("all {} have requires_grad = False", fixed.len())
                }
            ));
        }
        // Parameters with requires_grad = False are kept as they are, like buffers.
        let mut buffers = fixed;
        buffers.extend(named_buffers(&module).map_err(|e| format!("{path}: cannot list its buffers: {e}"))?);
        let mut model = ScriptModel {
            path: path.to_string(),
            module: RefCell::new(module),
            training: Cell::new(true),
            has_features: false,
            layers: vec![],
        };
        model.set_mode(false);
        let rows = sample.size()[0];
        let given = sample.size();
        let out = tch::no_grad(|| model.module.borrow().forward_ts(&[sample]));
        let out = out.map_err(|e| {
            let expected = expected_input(&params);
            format!(
                "{path}: forward fails on the task's inputs: given input shape {given:?} (per sample {:?}){expected}: {}",
                &given[1..],
                first_line(&e)
            )
        })?;
        if out.size() != [rows, classes as i64] {
            return Err(format!(
                "{path}: forward returns shape {:?} for {rows} inputs; the task has {classes} classes, \
                 so it must return [{rows}, {classes}] (one logit per class)",
                out.size()
            ));
        }
        // Integer logits pass the shape check but fail in the loss (a C++ backtrace).
        if !out.is_floating_point() {
            return Err(format!(
                "{path}: forward returns {:?} logits; it must return a floating-point tensor \
                 (one logit per class, e.g. float32)",
                out.kind()
            ));
        }
        let features =
            tch::no_grad(|| model.module.borrow().method_is("features", &[IValue::Tensor(sample.shallow_clone())]));
        match features {
            Ok(v) => {
                let dict = as_features(v, rows).map_err(|m| format!("{path}: features(x) {m}"))?;
                model.has_features = true;
                model.layers = dict.into_iter().map(|(k, _)| k).collect();
            }
            Err(e) if is_missing_method(&e) => model.layers = vec![OUTPUT_LAYER.to_string()],
            Err(e) => return Err(format!("{path}: features(x) fails on the task's inputs: {}", first_line(&e))),
        }
        model.set_mode(true);
        Ok(Loaded { model, params, buffers })
    }

    /// The probe-able layers: `features`' keys, or `output`.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    fn set_mode(&self, train: bool) {
        if self.training.get() != train {
            let mut m = self.module.borrow_mut();
            if train {
                m.set_train()
            } else {
                m.set_eval()
            }
            self.training.set(train);
        }
    }

    /// Logits, and the probe-able layers' outputs when `capture` is set. A libtorch
    /// error here (the load checked a small batch only) ends the run as failed with a
    /// message naming the module's file, the call and libtorch's reason (`fail`).
    pub fn forward(&self, x: &Tensor, capture: bool, train: bool) -> (Tensor, Vec<Feature>) {
        self.set_mode(train);
        let m = self.module.borrow();
        let path = &self.path;
        let rows = x.size().first().copied().unwrap_or(0);
        let out = m.forward_ts(&[x]).unwrap_or_else(|e| {
            fail(format!(
                "{path}: forward(x) failed on a batch of shape {:?} ({} mode): {}",
                x.size(),
                if train { "train" } else { "eval" },
                first_line(&e)
            ))
        });
        if !out.is_floating_point() || out.size().first() != Some(&rows) {
            fail(format!(
                "{path}: forward(x) returned {:?} of shape {:?} for a batch of {rows}; \
                 floating-point logits with one row per input expected",
                out.kind(),
                out.size()
            ));
        }
        if !capture {
            return (out, Vec::new());
        }
        let feats = if self.has_features {
            let v = m.method_is("features", &[IValue::Tensor(x.shallow_clone())]).unwrap_or_else(|e| {
                fail(format!("{path}: features(x) failed on a batch of shape {:?}: {}", x.size(), first_line(&e)))
            });
            as_features(v, rows).unwrap_or_else(|m| fail(format!("{path}: features(x) {m}")))
        } else {
            vec![(OUTPUT_LAYER.to_string(), out.shallow_clone())]
        };
        let feats = feats.into_iter().map(|(layer, value)| Feature { layer, value, is_attention: false }).collect();
        (out, feats)
    }
}

fn is_missing_method(e: &tch::TchError) -> bool {
    let s = e.to_string();
    s.contains("not defined") || s.contains("does not exist") || s.contains("doesn't exist")
}

/// `features`' result as (name, tensor) pairs: a dict of strings to floating-point
/// tensors with one row per input.
fn as_features(v: IValue, rows: i64) -> Result<Vec<(String, Tensor)>, String> {
    let IValue::GenericDict(pairs) = v else {
        return Err("must return a Dict[str, Tensor]".into());
    };
    if pairs.is_empty() {
        return Err("returns an empty dict; it names the probe-able layers".into());
    }
    pairs
        .into_iter()
        .map(|(k, t)| match (k, t) {
            (IValue::String(k), IValue::Tensor(t)) => {
                if t.dim() == 0 || t.size()[0] != rows || !t.is_floating_point() {
                    return Err(format!(
                        "[\"{k}\"] has shape {:?} ({:?}); expected floating-point features with one row per input ({rows})",
                        t.size(),
                        t.kind()
                    ));
                }
                Ok((k, t.to_kind(Kind::Float)))
            }
            _ => Err("must return a Dict[str, Tensor]".into()),
        })
        .collect()
}

/// What the module's first parameter says about the input it expects: a linear layer's
/// weight `[out, in]` reads `in` features, a convolution's `[out, in, kh, kw]` images of
/// `in` channels. Empty when it says nothing.
fn expected_input(params: &[(String, Tensor)]) -> String {
    match params.first() {
        Some((name, w)) if w.dim() == 2 => {
            format!("; expected [n, {}] (its first parameter {name} has shape {:?})", w.size()[1], w.size())
        }
        Some((name, w)) if w.dim() == 4 => {
            format!("; expected [n, {}, H, W] (its first parameter {name} has shape {:?})", w.size()[1], w.size())
        }
        _ => String::new(),
    }
}
