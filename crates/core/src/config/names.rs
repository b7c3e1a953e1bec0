//! Enumerated config values. One macro gives each a string form, a custom
//! `Deserialize` with a message naming what was expected, and `Serialize`.

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
            fn expected() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::custom(format!(
                    "unknown {} \"{}\", expected one of {}", $what, s, $name::expected()
                )))
            }
        }
    };
}

named_enum!(OptimizerKind, "optimizer", { Sgd => "sgd", Adam => "adam", AdamW => "adamw" });
named_enum!(
    /// Learning-rate shape inside a phase.
    ScheduleKind, "schedule", {
    Constant => "constant",
    Warmup => "warmup",
    Cosine => "cosine",
    Cyclical => "cyclical",
    Cooldown => "cooldown",
});
named_enum!(TaskKind, "task kind", {
    Modular => "modular", Parity => "parity", Gaussian => "gaussian", Csv => "csv",
});
named_enum!(ModOp, "modular op", { Add => "add", Sub => "sub", Mul => "mul", Div => "div" });
named_enum!(ModelKind, "model kind", { Mlp => "mlp", Transformer => "transformer" });
named_enum!(Activation, "activation", {
    Relu => "relu", Gelu => "gelu", Tanh => "tanh", Sigmoid => "sigmoid", Linear => "linear",
});
named_enum!(LossKind, "loss", { CrossEntropy => "ce", Mse => "mse", L2 => "l2", Hinge => "hinge" });
named_enum!(
    /// How a model's parameters are initialised (`[model] init`).
    InitKind, "init", {
    Torch => "torch", Tch => "tch", Kaiming => "kaiming", Xavier => "xavier", Normal => "normal",
});
named_enum!(
    /// The split the probes' fixed batch is drawn from.
    ProbeSplit, "probe split", { Train => "train", Val => "val" });
named_enum!(RuleMode, "rule mode", { Auto => "auto", Suggest => "suggest" });

named_enum!(OnDivergence, "on_divergence", {
    Stop => "stop", Rollback => "rollback", RollbackOnSpike => "rollback_on_spike",
});

// `named_enum!` derives the enum, so `#[default]` cannot be put on a variant here.
#[allow(clippy::derivable_impls)]
impl Default for OnDivergence {
    fn default() -> Self {
        OnDivergence::Stop
    }
}

#[allow(clippy::derivable_impls)]
impl Default for RuleMode {
    fn default() -> Self {
        RuleMode::Suggest
    }
}

/// `cpu`, `auto` (CUDA when present), `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Auto,
    Cuda(usize),
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "auto" => Ok(DeviceChoice::Auto),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => {
                other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceChoice::Cuda).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown device \"{s}\", expected one of cpu, auto, cuda, cuda:N"))
                })
            }
        }
    }
}
