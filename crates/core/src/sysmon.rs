//! System metrics of the process that trains: CPU %, resident memory, and the GPU's
//! utilisation, memory and temperature when an NVIDIA GPU is present. No libtorch:
//! `/proc/self` for the process, NVML for the GPU, loaded at run time with `dlopen`
//! (no build-time CUDA, and a machine without the driver simply has no GPU metrics).
//!
//! A host calls [`spawn`]: a thread samples about once a second and hands the numbers
//! over a bounded channel, so the run loop only does a `try_recv` between steps (the
//! host records them as an `eval` event with split [`SPLIT`]; see docs/RUNLOG.md).
//!
//! Metric names (global, like every metric name, see `event`):
//! `sys/cpu_pct` (the process's CPU time over wall time, ×100: 100 = one core busy),
//! `sys/rss_mb` (resident set, 10⁶ bytes), and with a GPU `sys/gpu_util_pct`,
//! `sys/gpu_mem_mb` (used), `sys/gpu_mem_total_mb`, `sys/gpu_temp_c`.

use crate::event::Metrics;
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// The `eval` split under which a host records system samples.
pub const SPLIT: &str = "system";
pub const CPU_PCT: &str = "sys/cpu_pct";
pub const RSS_MB: &str = "sys/rss_mb";
pub const GPU_UTIL_PCT: &str = "sys/gpu_util_pct";
pub const GPU_MEM_MB: &str = "sys/gpu_mem_mb";
pub const GPU_MEM_TOTAL_MB: &str = "sys/gpu_mem_total_mb";
pub const GPU_TEMP_C: &str = "sys/gpu_temp_c";

/// Samples the current process (and one GPU) on demand.
pub struct Sampler {
    last_cpu: Option<(Instant, f64)>,
    gpu: Result<nvml::Gpu, String>,
}

impl Sampler {
    /// `gpu_index`: the NVML device to report (the run's `cuda:N`, else 0).
    pub fn new(gpu_index: u32) -> Sampler {
        Sampler { last_cpu: None, gpu: nvml::Gpu::open(gpu_index) }
    }

    /// Why there are no GPU metrics (`None` when there are).
    pub fn gpu_absent(&self) -> Option<&str> {
        self.gpu.as_ref().err().map(String::as_str)
    }

    /// One sample. CPU % needs two readings: the first call has none.
    pub fn sample(&mut self) -> Metrics {
        let mut m = Metrics::new();
        let now = Instant::now();
        if let Some(cpu) = process_cpu_seconds() {
            if let Some((t0, c0)) = self.last_cpu {
                let wall = now.duration_since(t0).as_secs_f64();
                if wall > 0.0 {
                    m.insert(CPU_PCT.into(), ((cpu - c0) / wall * 100.0).max(0.0));
                }
            }
            self.last_cpu = Some((now, cpu));
        }
        if let Some(rss) = rss_bytes() {
            m.insert(RSS_MB.into(), rss as f64 / 1e6);
        }
        if let Ok(gpu) = &self.gpu {
            m.extend(gpu.sample());
        }
        m
    }
}

/// Starts the sampling thread: a sample every `every` on the returned channel (at most
/// two waiting: a run loop stuck in a long step loses samples, never blocks). The thread
/// ends when the receiver is dropped. Also returns why there are no GPU metrics, if so.
pub fn spawn(every: Duration, gpu_index: u32) -> (Receiver<Metrics>, Option<String>) {
    let (tx, rx) = sync_channel(2);
    let (ready_tx, ready_rx) = sync_channel(1);
    let spawned = std::thread::Builder::new().name("sysmon".into()).stack_size(256 << 10).spawn(move || {
        let mut s = Sampler::new(gpu_index);
        let _ = ready_tx.send(s.gpu_absent().map(str::to_string));
        s.sample(); // the CPU baseline
        loop {
            std::thread::sleep(every);
            match tx.try_send(s.sample()) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    });
    let absent = match spawned {
        Ok(_) => ready_rx.recv().unwrap_or(Some("the sampler stopped".into())),
        Err(e) => Some(format!("cannot start the sampler: {e}")),
    };
    (rx, absent)
}

/// User + system CPU seconds of this process (`/proc/self/stat` fields 14 and 15).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Resident set size (`VmRSS` in `/proc/self/status`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The few NVML calls we need, through `dlopen`: the driver's `libnvidia-ml.so.1` is
/// there exactly when an NVIDIA GPU can be used.
mod nvml {
    use super::*;
    use std::ffi::{CStr, c_char, c_int, c_uint, c_void};

    type Device = *mut c_void;
    #[repr(C)]
    #[derive(Default)]
    struct Utilization {
        gpu: c_uint,
        memory: c_uint,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Memory {
        total: u64,
        free: u64,
        used: u64,
    }

    pub struct Gpu {
        device: Device,
        util: unsafe extern "C" fn(Device, *mut Utilization) -> c_int,
        mem: unsafe extern "C" fn(Device, *mut Memory) -> c_int,
        temp: unsafe extern "C" fn(Device, c_uint, *mut c_uint) -> c_int,
    }

    // SAFETY: NVML is thread-safe; the handle is an opaque pointer the library owns.
    unsafe impl Send for Gpu {}

    fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Result<T, String> {
        // SAFETY: dlsym on a handle dlopen returned; T is the function's C signature.
        let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
        if p.is_null() {
            return Err(format!("NVML has no {}", name.to_string_lossy()));
        }
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
    }

    impl Gpu {
        pub fn open(index: u32) -> Result<Gpu, String> {
            let mut lib = std::ptr::null_mut();
            for name in [c"libnvidia-ml.so.1", c"libnvidia-ml.so"] {
                // SAFETY: dlopen with a constant name; the library stays loaded (never closed).
                lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
                if !lib.is_null() {
                    break;
                }
            }
            if lib.is_null() {
                return Err("no NVIDIA driver (libnvidia-ml.so.1 not found)".into());
            }
            let init: unsafe extern "C" fn() -> c_int = sym(lib, c"nvmlInit_v2")?;
            let count: unsafe extern "C" fn(*mut c_uint) -> c_int = sym(lib, c"nvmlDeviceGetCount_v2")?;
            let by_index: unsafe extern "C" fn(c_uint, *mut Device) -> c_int =
                sym(lib, c"nvmlDeviceGetHandleByIndex_v2")?;
            let error: unsafe extern "C" fn(c_int) -> *const c_char = sym(lib, c"nvmlErrorString")?;
            let why = |rc: c_int| {
                // SAFETY: NVML returns a static string for every code.
                let s = unsafe { error(rc) };
                if s.is_null() {
                    format!("error {rc}")
                } else {
                    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
                }
            };
            // SAFETY: plain NVML calls with out-pointers to locals.
            let rc = unsafe { init() };
            if rc != 0 {
                return Err(format!("NVML did not start: {}", why(rc)));
            }
            let mut n: c_uint = 0;
            let rc = unsafe { count(&mut n) };
            if rc != 0 || n == 0 {
                return Err("no NVIDIA GPU".into());
            }
            let mut device: Device = std::ptr::null_mut();
            let rc = unsafe { by_index(index.min(n - 1), &mut device) };
            if rc != 0 {
                return Err(format!("NVML: GPU {index}: {}", why(rc)));
            }
            Ok(Gpu {
                device,
                util: sym(lib, c"nvmlDeviceGetUtilizationRates")?,
                mem: sym(lib, c"nvmlDeviceGetMemoryInfo")?,
                temp: sym(lib, c"nvmlDeviceGetTemperature")?,
            })
        }

        /// What NVML answers now; a query that fails is left out.
        pub fn sample(&self) -> Metrics {
            let mut m = Metrics::new();
            let (mut u, mut mem, mut t) = (Utilization::default(), Memory::default(), 0 as c_uint);
            // SAFETY: NVML calls on a valid handle with out-pointers to locals.
            if unsafe { (self.util)(self.device, &mut u) } == 0 {
                m.insert(GPU_UTIL_PCT.into(), u.gpu as f64);
            }
            if unsafe { (self.mem)(self.device, &mut mem) } == 0 {
                m.insert(GPU_MEM_MB.into(), mem.used as f64 / 1e6);
                m.insert(GPU_MEM_TOTAL_MB.into(), mem.total as f64 / 1e6);
            }
            // NVML_TEMPERATURE_GPU = 0.
            if unsafe { (self.temp)(self.device, 0, &mut t) } == 0 {
                m.insert(GPU_TEMP_C.into(), t as f64);
            }
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_cpu_and_rss_of_this_process() {
        let mut s = Sampler::new(0);
        let first = s.sample();
        assert!(!first.contains_key(CPU_PCT), "one reading gives no rate");
        assert!(first[RSS_MB] > 1.0, "{first:?}");
        // Burn CPU for 300 ms: the process's CPU % is then well above idle.
        let until = Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let second = s.sample();
        assert!(second[CPU_PCT] > 30.0 && second[CPU_PCT] < 1000.0, "{second:?}");
        // Without a driver, no GPU metric and a reason; with one, all four.
        match s.gpu_absent() {
            Some(why) => {
                assert!(!why.is_empty());
                assert!(!second.keys().any(|k| k.starts_with("sys/gpu")));
            }
            None => assert!(second.contains_key(GPU_MEM_MB) && second.contains_key(GPU_TEMP_C), "{second:?}"),
        }
    }

    #[test]
    fn the_thread_sends_samples_and_stops_with_its_receiver() {
        let (rx, _) = spawn(Duration::from_millis(20), 0);
        let m = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(m.contains_key(CPU_PCT) && m.contains_key(RSS_MB), "{m:?}");
        drop(rx);
    }
}
