//! System metrics of what trains: CPU %, resident memory, and the GPUs' utilisation,
//! memory and temperature when NVIDIA GPUs are present. No libtorch: `/proc` for the
//! processes, NVML for the GPUs, loaded at run time with `dlopen` (no build-time CUDA,
//! and a machine without the driver simply has no GPU metrics).
//!
//! Whose figures ([`Processes`]): the built-in host trains in its own process
//! (`/proc/self`); an external run's host measures the *job*: every process descended
//! from the job's first process plus every member of its process group (torchrun's
//! workers are descendants; an orphaned helper stays in the group), never the host
//! itself. CPU time then counts each process's own and its reaped children's
//! (`cutime`/`cstime`), so a worker that exits between two samples still counts.
//!
//! The built-in host calls [`spawn`]: a thread samples about once a second and hands
//! the numbers over a bounded channel, so the run loop only does a `try_recv` between
//! steps. The external host drives a [`Sampler`] from a task of its own. Both record a
//! sample as an `eval` event with split [`SPLIT`] (docs/RUNLOG.md).
//!
//! Metric names (global, like every metric name, see `event`):
//! `sys/cpu_pct` (CPU time over wall time, ×100: 100 = one core busy), `sys/rss_mb`
//! (resident set, 10⁶ bytes; for a job the sum over its processes, so pages they share
//! count once per process), and per GPU `sys/gpu_util_pct`, `sys/gpu_mem_mb` (used),
//! `sys/gpu_mem_total_mb`, `sys/gpu_temp_c`. With several GPUs the first keeps these
//! names and GPU *k* (the job's `cuda:k`) is `sys/gpu<k>_util_pct`, `sys/gpu<k>_mem_mb`,
//! … ([`gpu_metric`]): one series a GPU, no aggregate in the log; the system panel
//! shows their mean and max (`ui::system`).
//!
//! Which GPUs ([`GpuChoice`]): the built-in host's `cuda:N`; for a job, those its
//! `CUDA_VISIBLE_DEVICES` lets it use (integer indices, or `GPU-…` UUIDs matched by
//! prefix as CUDA does), else every GPU NVML reports. Indices are NVML's (PCI bus
//! order), the same as CUDA's unless `CUDA_DEVICE_ORDER` is left at `FASTEST_FIRST` on a
//! machine with mixed GPUs. MIG instances are not reported (NVML has no utilisation for
//! them); the reason is noted in the run's log.

use crate::event::Metrics;
use std::collections::HashMap;
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
/// The name of the job's GPU `k`'s metric, from the first GPU's (`GPU_UTIL_PCT`, …):
/// `k = 0` keeps it, `k = 3` makes `sys/gpu3_util_pct`.
pub fn gpu_metric(k: usize, first: &str) -> String {
    match (k, first.strip_prefix("sys/gpu_")) {
        (0, _) | (_, None) => first.to_string(),
        (k, Some(rest)) => format!("sys/gpu{k}_{rest}"),
    }
}

/// Which GPU a metric name is about, and the first GPU's name for it:
/// `sys/gpu3_util_pct` → `(3, "sys/gpu_util_pct")`; `None` for other names.
pub fn gpu_of(name: &str) -> Option<(usize, String)> {
    let rest = name.strip_prefix("sys/gpu")?;
    if let Some(r) = rest.strip_prefix('_') {
        return Some((0, format!("sys/gpu_{r}")));
    }
    let (k, r) = rest.split_once('_')?;
    if k.starts_with('0') {
        return None;
    }
    Some((k.parse().ok()?, format!("sys/gpu_{r}")))
}

/// Whose CPU time and memory a [`Sampler`] measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processes {
    /// This process (the built-in host trains in it).
    This,
    /// A job: `root` and its descendants, and with `group` every member of that process
    /// group; never this process (a host started by its job is the job's child).
    Job { root: u32, group: Option<u32> },
}

/// Which GPUs a [`Sampler`] reports, in the order of their metric names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuChoice {
    /// One NVML index: the built-in host's `cuda:N` (past the last GPU: the last).
    Index(u32),
    /// Every GPU NVML reports.
    All,
    /// The job's `CUDA_VISIBLE_DEVICES` (`raw`), read as CUDA reads it: the entries up
    /// to the first it cannot use.
    Visible { raw: String, entries: Vec<VisibleGpu> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VisibleGpu {
    Index(u32),
    /// A `GPU-…` UUID or a prefix of one.
    Uuid(String),
}

impl GpuChoice {
    /// The GPUs a job with this `CUDA_VISIBLE_DEVICES` (`None`: unset) can use, and a
    /// note on what is left out. CUDA ignores everything from the first entry it cannot
    /// parse (`-1`, the usual way to hide every GPU); MIG instances are left out here.
    pub fn for_job(cuda_visible_devices: Option<&str>) -> (GpuChoice, Option<String>) {
        let Some(raw) = cuda_visible_devices else { return (GpuChoice::All, None) };
        let mut entries = Vec::new();
        let mut note = None;
        for e in raw.split(',').map(str::trim) {
            if let Ok(i) = e.parse::<u32>() {
                entries.push(VisibleGpu::Index(i));
            } else if e.starts_with("GPU-") && e.len() > 4 {
                entries.push(VisibleGpu::Uuid(e.to_string()));
            } else {
                if e.starts_with("MIG-") {
                    note = Some(format!(
                        "CUDA_VISIBLE_DEVICES=\"{raw}\": MIG instance {e} and what follows it not reported (NVML has no utilisation for MIG)"
                    ));
                }
                break;
            }
        }
        (GpuChoice::Visible { raw: raw.to_string(), entries }, note)
    }
}

/// Samples the processes and GPUs on demand.
pub struct Sampler {
    procs: Processes,
    last_cpu: Option<(Instant, f64)>,
    gpus: Result<nvml::Gpus, String>,
    notes: Vec<String>,
    gone: bool,
}

impl Sampler {
    /// The built-in host: this process, and NVML device `gpu_index` (the run's `cuda:N`,
    /// else 0).
    pub fn new(gpu_index: u32) -> Sampler {
        Sampler::with(Processes::This, &GpuChoice::Index(gpu_index))
    }

    /// Loads NVML when GPUs are asked for (a blocking call: `nvmlInit` can take a while
    /// on a large machine).
    pub fn with(procs: Processes, gpus: &GpuChoice) -> Sampler {
        let (gpus, notes) = match nvml::Gpus::open(gpus) {
            Ok((g, notes)) => (Ok(g), notes),
            Err(e) => (Err(e), Vec::new()),
        };
        Sampler { procs, last_cpu: None, gpus, notes, gone: false }
    }

    /// Why there are no GPU metrics (`None` when there are).
    pub fn gpu_absent(&self) -> Option<&str> {
        self.gpus.as_ref().err().map(String::as_str)
    }

    /// The NVML indices of the GPUs reported, in metric-name order.
    pub fn gpu_indices(&self) -> Vec<u32> {
        self.gpus.as_ref().map(|g| g.indices()).unwrap_or_default()
    }

    /// What was asked for and is not reported (an index NVML does not have, …).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The job's first process is gone: the sampler reports nothing more.
    pub fn job_gone(&self) -> bool {
        self.gone
    }

    /// One sample. CPU % needs two readings: the first call has none. Empty once the
    /// job is gone.
    pub fn sample(&mut self) -> Metrics {
        let mut m = Metrics::new();
        if self.gone {
            return m;
        }
        let now = Instant::now();
        let procs = match self.procs {
            Processes::This => read_stat(std::path::Path::new("/proc/self/stat")).map(|s| vec![s]),
            Processes::Job { root, group } => job_processes(root, group),
        };
        match procs {
            None if self.procs != Processes::This => {
                self.gone = true;
                return m;
            }
            None => {}
            Some(procs) => {
                // A job's reaped children count with their parent; this process has none.
                let cpu = procs.iter().map(|p| p.cpu + p.children_cpu).sum::<u64>() as f64 / clock_ticks();
                if let Some((t0, c0)) = self.last_cpu {
                    let wall = now.duration_since(t0).as_secs_f64();
                    if wall > 0.0 {
                        // A process that leaves the job (an orphan of another group) takes
                        // its time with it: never a negative rate.
                        m.insert(CPU_PCT.into(), ((cpu - c0) / wall * 100.0).max(0.0));
                    }
                }
                self.last_cpu = Some((now, cpu));
                let pages: u64 = procs.iter().map(|p| p.rss_pages).sum();
                m.insert(RSS_MB.into(), (pages * page_size()) as f64 / 1e6);
            }
        }
        if let Ok(gpus) = &self.gpus {
            gpus.sample(&mut m);
        }
        m
    }
}

/// Starts the sampling thread (the built-in host): a sample every `every` on the
/// returned channel (at most two waiting: a run loop stuck in a long step loses
/// samples, never blocks). The thread ends when the receiver is dropped. Also returns
/// why there are no GPU metrics, if so.
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

/// The fields of `/proc/PID/stat` a sample uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    /// User + system time, clock ticks.
    pub cpu: u64,
    /// The same of its children it has waited for.
    pub children_cpu: u64,
    pub rss_pages: u64,
}

fn read_stat(path: &std::path::Path) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat(stat: &str) -> Option<ProcStat> {
    let pid = stat.split_once(' ')?.0.parse().ok()?;
    // The command name (field 2) may hold spaces and ')'; the fields after it follow the
    // last ')'. `f[0]` is field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    Some(ProcStat {
        pid,
        ppid: n(4)? as u32,
        pgrp: n(5)? as u32,
        cpu: n(14)? + n(15)?,
        children_cpu: n(16)? + n(17)?,
        rss_pages: n(24)?,
    })
}

/// A job's processes now (see [`Processes::Job`]), `None` when `root` is gone. One walk
/// of `/proc`: a process that starts or ends meanwhile is simply in or out.
pub fn job_processes(root: u32, group: Option<u32>) -> Option<Vec<ProcStat>> {
    let me = std::process::id();
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if let Some(s) = read_stat(&entry.path().join("stat")) {
            all.push(s);
        }
    }
    let root_at = all.iter().position(|p| p.pid == root)?;
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, p) in all.iter().enumerate() {
        children.entry(p.ppid).or_default().push(i);
    }
    let mut keep: Vec<bool> = all.iter().map(|p| group == Some(p.pgrp)).collect();
    keep[root_at] = true;
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &i in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            keep[i] = true;
            stack.push(all[i].pid);
        }
    }
    Some(all.into_iter().zip(keep).filter_map(|(p, k)| k.then_some(p)).collect())
}

/// This process's descendants (children, theirs, …) and the members of process group
/// `group`, without this process: after the job's first process has exited, what is
/// left of its tree (with `PR_SET_CHILD_SUBREAPER`, its orphans are our children).
pub fn own_descendants(group: Option<u32>) -> Vec<ProcStat> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let all: Vec<ProcStat> = dir
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            if pid == me { None } else { read_stat(&e.path().join("stat")) }
        })
        .collect();
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, p) in all.iter().enumerate() {
        children.entry(p.ppid).or_default().push(i);
    }
    let mut keep: Vec<bool> = all.iter().map(|p| group.is_some_and(|g| g == p.pgrp)).collect();
    let mut stack = vec![me];
    while let Some(pid) = stack.pop() {
        for &i in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            keep[i] = true;
            stack.push(all[i].pid);
        }
    }
    all.into_iter().zip(keep).filter_map(|(p, k)| k.then_some(p)).collect()
}

/// Whether `pid` is running: it exists and is no zombie.
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st != "Z" && st != "X")))
        .unwrap_or(false)
}

/// A variable of a process's environment as it started (`/proc/PID/environ`).
pub fn process_env(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let v = kv.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(v).into_owned())
    })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
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

    /// The GPUs reported, in metric-name order: (NVML index, handle).
    pub struct Gpus {
        devices: Vec<(u32, Device)>,
        util: unsafe extern "C" fn(Device, *mut Utilization) -> c_int,
        mem: unsafe extern "C" fn(Device, *mut Memory) -> c_int,
        temp: unsafe extern "C" fn(Device, c_uint, *mut c_uint) -> c_int,
    }

    // SAFETY: NVML is thread-safe; the handles are opaque pointers the library owns.
    unsafe impl Send for Gpus {}

    fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Result<T, String> {
        // SAFETY: dlsym on a handle dlopen returned; T is the function's C signature.
        let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
        if p.is_null() {
            return Err(format!("NVML has no {}", name.to_string_lossy()));
        }
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
    }

    impl Gpus {
        /// The chosen GPUs, and notes on those asked for that NVML does not have.
        pub fn open(choice: &GpuChoice) -> Result<(Gpus, Vec<String>), String> {
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
            let get_uuid: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> c_int = sym(lib, c"nvmlDeviceGetUUID")?;
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
            let handle = |i: u32| -> Result<Device, String> {
                let mut device: Device = std::ptr::null_mut();
                // SAFETY: as above.
                let rc = unsafe { by_index(i, &mut device) };
                if rc != 0 { Err(format!("NVML: GPU {i}: {}", why(rc))) } else { Ok(device) }
            };
            let uuid = |d: Device| -> String {
                let mut buf = [0 as c_char; 96]; // NVML_DEVICE_UUID_V2_BUFFER_SIZE
                // SAFETY: NVML writes a NUL-terminated string of at most `len` bytes.
                if unsafe { get_uuid(d, buf.as_mut_ptr(), buf.len() as c_uint) } != 0 {
                    return String::new();
                }
                unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
            };
            let mut notes = Vec::new();
            let mut devices = Vec::new();
            match choice {
                GpuChoice::Index(i) => {
                    let i = (*i).min(n - 1);
                    devices.push((i, handle(i)?));
                }
                GpuChoice::All => {
                    for i in 0..n {
                        devices.push((i, handle(i)?));
                    }
                }
                GpuChoice::Visible { raw, entries } => {
                    for e in entries {
                        let found = match e {
                            VisibleGpu::Index(i) if *i < n => Some((*i, handle(*i)?)),
                            VisibleGpu::Index(_) => None,
                            VisibleGpu::Uuid(u) => {
                                let mut hit = None;
                                for i in 0..n {
                                    let d = handle(i)?;
                                    if uuid(d).starts_with(u.as_str()) {
                                        hit = Some((i, d));
                                        break;
                                    }
                                }
                                hit
                            }
                        };
                        match found {
                            Some(d) => devices.push(d),
                            None => {
                                // CUDA ignores the entries from one it cannot use.
                                let e = match e {
                                    VisibleGpu::Index(i) => i.to_string(),
                                    VisibleGpu::Uuid(u) => u.clone(),
                                };
                                notes.push(format!(
                                    "CUDA_VISIBLE_DEVICES=\"{raw}\": NVML has no GPU {e} ({n} GPUs); it and what follows it not reported"
                                ));
                                break;
                            }
                        }
                    }
                    if devices.is_empty() {
                        return Err(format!("the job can use no GPU (CUDA_VISIBLE_DEVICES=\"{raw}\")"));
                    }
                }
            }
            Ok((
                Gpus {
                    devices,
                    util: sym(lib, c"nvmlDeviceGetUtilizationRates")?,
                    mem: sym(lib, c"nvmlDeviceGetMemoryInfo")?,
                    temp: sym(lib, c"nvmlDeviceGetTemperature")?,
                },
                notes,
            ))
        }

        pub fn indices(&self) -> Vec<u32> {
            self.devices.iter().map(|d| d.0).collect()
        }

        /// What NVML answers now, GPU `k` under [`gpu_metric`]`(k, …)`; a query that
        /// fails is left out.
        pub fn sample(&self, m: &mut Metrics) {
            for (k, &(_, device)) in self.devices.iter().enumerate() {
                let (mut u, mut mem, mut t) = (Utilization::default(), Memory::default(), 0 as c_uint);
                // SAFETY: NVML calls on a valid handle with out-pointers to locals.
                if unsafe { (self.util)(device, &mut u) } == 0 {
                    m.insert(gpu_metric(k, GPU_UTIL_PCT), u.gpu as f64);
                }
                if unsafe { (self.mem)(device, &mut mem) } == 0 {
                    m.insert(gpu_metric(k, GPU_MEM_MB), mem.used as f64 / 1e6);
                    m.insert(gpu_metric(k, GPU_MEM_TOTAL_MB), mem.total as f64 / 1e6);
                }
                // NVML_TEMPERATURE_GPU = 0.
                if unsafe { (self.temp)(device, 0, &mut t) } == 0 {
                    m.insert(gpu_metric(k, GPU_TEMP_C), t as f64);
                }
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Tests that measure CPU take turns (a spinning job would slow the other's).
    static CPU_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn samples_cpu_and_rss_of_this_process() {
        let _one = CPU_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        // This process's CPU time by the kernel's own clock, to judge the sampler against
        // (on a busy machine the share it gets is whatever it gets).
        let cpu_s = || {
            let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime writes the timespec we own.
            unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
            t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
        };
        let mut s = Sampler::new(0);
        let (t0, c0) = (Instant::now(), cpu_s());
        let first = s.sample();
        assert!(!first.contains_key(CPU_PCT), "one reading gives no rate");
        assert!(first[RSS_MB] > 1.0, "{first:?}");
        // Burn 300 ms of CPU (not of wall time): the process's CPU % is then well above idle.
        let mut x = 0u64;
        while cpu_s() - c0 < 0.3 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let second = s.sample();
        let measured = 100.0 * (cpu_s() - c0) / t0.elapsed().as_secs_f64();
        let got = second[CPU_PCT];
        // The sampler reads clock ticks (10 ms): within 10 points or a quarter of the share.
        assert!((got - measured).abs() <= (0.25 * measured).max(10.0), "sampled {got} %, measured {measured} %");
        // Without a driver, no GPU metric and a reason; with one, all four.
        match s.gpu_absent() {
            Some(why) => {
                assert!(!why.is_empty());
                assert!(!second.keys().any(|k| k.starts_with("sys/gpu")));
            }
            None => assert!(second.contains_key(GPU_MEM_MB) && second.contains_key(GPU_TEMP_C), "{second:?}"),
        }
    }

    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    /// A shell job in its own process group, as the external host starts one.
    fn job(script: &str) -> Child {
        let c = Command::new("sh").arg("-c").arg(script).process_group(0).spawn().unwrap();
        // Past its exec (until then the child's memory is not yet its own).
        wait_for("the job's exec", || {
            std::fs::read(format!("/proc/{}/cmdline", c.id())).is_ok_and(|l| l.starts_with(b"sh\0-c"))
        });
        c
    }

    fn stop(mut c: Child) {
        // SAFETY: the group this test started.
        unsafe { libc::killpg(c.id() as i32, libc::SIGKILL) };
        let _ = c.wait();
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pids(root: u32, group: Option<u32>) -> Vec<u32> {
        job_processes(root, group).map(|v| v.iter().map(|p| p.pid).collect()).unwrap_or_default()
    }

    #[test]
    fn the_walk_finds_descendants_and_the_group_but_not_this_process() {
        // sh → (sleep, sh → sleep): four processes in the tree. The subshell in ( … & )
        // leaves an orphan behind: no longer a descendant, still in the group.
        let c = job("sleep 30 & sh -c 'sleep 30' & (sleep 31 &) ; wait");
        let root = c.id();
        wait_for("the tree and the orphan", || pids(root, Some(root)).len() == 5);
        let tree = job_processes(root, None).unwrap();
        assert_eq!(tree.len(), 4, "{tree:?}");
        assert!(tree.iter().any(|p| p.pid == root));
        assert!(tree.iter().all(|p| p.pgrp == root), "{tree:?}");
        let me = std::process::id();
        assert!(!pids(root, Some(root)).contains(&me));
        // The orphan: in the group, parent no longer in the tree, and measured (its
        // memory too: on a busy machine the walk may first catch it between fork and
        // exec, or its subshell on the way out, so wait for it rather than look once).
        let orphans = || {
            let tree = job_processes(root, None).unwrap_or_default();
            let group = job_processes(root, Some(root)).unwrap_or_default();
            group.into_iter().filter(|p| !tree.iter().any(|t| t.pid == p.pid)).collect::<Vec<_>>()
        };
        wait_for("one orphan, with its memory", || {
            let o = orphans();
            o.len() == 1 && o[0].rss_pages > 0
        });
        stop(c);
        wait_for("the job to be gone", || job_processes(root, Some(root)).is_none());
    }

    /// CPU time a job's tree used between two walks.
    fn tree_cpu_s(root: u32) -> f64 {
        let procs = job_processes(root, Some(root)).unwrap();
        procs.iter().map(|p| p.cpu + p.children_cpu).sum::<u64>() as f64 / clock_ticks()
    }

    #[test]
    fn a_job_sampler_sums_cpu_over_the_tree_and_counts_reaped_children() {
        let _one = CPU_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        // The root sleeps; a grandchild spins (a fixed amount of work, so a loaded
        // machine only stretches it) and is reaped before the second sample, so only its
        // parent's cutime still holds its time. `times` prints what the root's children
        // used (its second line): the figure to compare with.
        let dir = tempfile::tempdir().unwrap();
        let (times, go) = (dir.path().join("times"), dir.path().join("go"));
        let c = job(&format!(
            "while [ ! -e {} ]; do sleep 0.05; done; sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; times > {}; sleep 30",
            go.display(),
            times.display()
        ));
        let root = c.id();
        let mut s = Sampler::with(Processes::Job { root, group: Some(root) }, &GpuChoice::All);
        let t0 = Instant::now();
        let first = s.sample();
        let cpu0 = tree_cpu_s(root);
        std::fs::write(&go, "").unwrap(); // the baseline is taken: spin
        assert!(!first.contains_key(CPU_PCT) && first[RSS_MB] > 0.0, "{first:?}");
        wait_for("the spinner's end", || std::fs::read_to_string(&times).is_ok_and(|t| t.lines().count() == 2));
        let second = s.sample();
        let wall = t0.elapsed().as_secs_f64();
        let cpu1 = tree_cpu_s(root);
        let text = std::fs::read_to_string(&times).unwrap();
        // "0m0.52s 0m0.01s": user and system time of the reaped children.
        let secs = |f: &str| -> f64 {
            let (m, s) = f.trim_end_matches('s').split_once('m').unwrap();
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        };
        let children: f64 = text.lines().nth(1).unwrap().split_whitespace().map(secs).sum();
        assert!(children > 0.05, "the spinner ran: {text}");
        // The spinner is gone, yet its time is in the tree's sum (ticks: 10 ms each).
        assert!(cpu1 - cpu0 >= children - 0.05, "tree {cpu0} → {cpu1}, children {children}");
        assert!(second[CPU_PCT] >= 100.0 * (children - 0.05) / wall, "{second:?} children {children} s in {wall} s");
        assert!(!s.job_gone());
        // Without a driver, no GPU metric; the same sampler stops reporting once the
        // job is gone.
        if s.gpu_absent().is_some() {
            assert!(!second.keys().any(|k| k.starts_with("sys/gpu")), "{second:?}");
        }
        stop(c);
        wait_for("the job to be gone", || s.sample().is_empty() && s.job_gone());
    }

    #[test]
    fn cuda_visible_devices_reads_as_cuda_reads_it() {
        let idx = |v: &[u32]| v.iter().map(|&i| VisibleGpu::Index(i)).collect::<Vec<_>>();
        assert_eq!(GpuChoice::for_job(None), (GpuChoice::All, None));
        let (c, note) = GpuChoice::for_job(Some("2, 3"));
        assert_eq!(c, GpuChoice::Visible { raw: "2, 3".into(), entries: idx(&[2, 3]) });
        assert!(note.is_none());
        // -1 (and anything CUDA cannot parse) hides it and what follows.
        let (c, _) = GpuChoice::for_job(Some("1,-1,0"));
        assert_eq!(c, GpuChoice::Visible { raw: "1,-1,0".into(), entries: idx(&[1]) });
        let (c, _) = GpuChoice::for_job(Some(""));
        assert_eq!(c, GpuChoice::Visible { raw: "".into(), entries: vec![] });
        let (c, _) = GpuChoice::for_job(Some("GPU-8932f937,0"));
        assert_eq!(
            c,
            GpuChoice::Visible {
                raw: "GPU-8932f937,0".into(),
                entries: vec![VisibleGpu::Uuid("GPU-8932f937".into()), VisibleGpu::Index(0)]
            }
        );
        let (c, note) = GpuChoice::for_job(Some("0,MIG-5c1a"));
        assert_eq!(c, GpuChoice::Visible { raw: "0,MIG-5c1a".into(), entries: idx(&[0]) });
        assert!(note.unwrap().contains("MIG instance MIG-5c1a"));
        // Without a driver a chosen GPU is simply absent, with a reason.
        let s = Sampler::with(Processes::This, &GpuChoice::for_job(Some("0")).0);
        assert!(s.gpu_absent().is_some() || s.gpu_indices() == [0]);
    }

    #[test]
    fn gpu_metric_names_round_trip() {
        assert_eq!(gpu_metric(0, GPU_UTIL_PCT), "sys/gpu_util_pct");
        assert_eq!(gpu_metric(3, GPU_MEM_TOTAL_MB), "sys/gpu3_mem_total_mb");
        assert_eq!(gpu_of("sys/gpu3_mem_total_mb"), Some((3, GPU_MEM_TOTAL_MB.to_string())));
        assert_eq!(gpu_of(GPU_TEMP_C), Some((0, GPU_TEMP_C.to_string())));
        assert_eq!(gpu_of("sys/gpu03_temp_c"), None);
        assert_eq!(gpu_of(CPU_PCT), None);
    }

    #[test]
    fn environ_of_a_process() {
        let mut c = Command::new("sleep").arg("5").env("PHASETOP_T_ENV", "a=b").spawn().unwrap();
        // Before its exec, the child's environment is still the parent's.
        wait_for("the exec", || {
            std::fs::read_to_string(format!("/proc/{}/cmdline", c.id())).is_ok_and(|l| l.starts_with("sleep"))
        });
        assert_eq!(process_env(c.id(), "PHASETOP_T_ENV").as_deref(), Some("a=b"));
        assert_eq!(process_env(c.id(), "PHASETOP_T_EN"), None);
        let _ = c.kill();
        let _ = c.wait();
    }

    #[test]
    fn the_thread_sends_samples_and_stops_with_its_receiver() {
        let (rx, _) = spawn(Duration::from_millis(20), 0);
        let m = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(m.contains_key(CPU_PCT) && m.contains_key(RSS_MB), "{m:?}");
        drop(rx);
    }
}
