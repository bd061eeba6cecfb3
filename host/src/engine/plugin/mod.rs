//! The loaded plugin: one engine, the compiled component and a linker that
//! offers WASI and the narrow `host` interface ([`crate::imports`]),
//! pre-instantiated once and shared by every sandbox (the pattern of
//! wasmtime's `examples/wasip2-plugins`); and beside it the keeper
//! component ([`crate::keeper`]), which keeps each run's books.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::{CollectOptions, IntoAnyhow, Plugin as PluginWorld, PluginPre};
use crate::confined_fs::{link_wasi, Layer};
use crate::imports::HostState;
use crate::instance::Instance;
use crate::keeper::{Keeper, KeeperPre, KeeperState};
use crate::limits::{EpochTicker, Limits, StallWatch};

pub mod cache;

pub use cache::Precompiled;

/// The guest component (world `plugin`), built by `build.rs` and embedded
/// in the binary: the one every WASI host can run (`component --kind
/// plugin` writes it), and the one this host loads where wasmtime-wasi
/// serves the guest's filesystem.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runner_metrics_plugin.wasm"));

/// The same plugin's fast build (world `plugin-fast`, `wit/confined-fs`):
/// it reads a storage's files through the confined filesystem's
/// `storage-files`, so this host loads it wherever that filesystem serves
/// the guest (see [`PluginOptions::component`]).
pub static EMBEDDED_FAST_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/runner_metrics_plugin_fast.wasm"));

/// The keeper component (world `keeper`): the books and re-checks of a
/// run, which every host runs beside the plugin.
pub static EMBEDDED_KEEPER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runner_metrics_keeper.wasm"));

/// The command component (world `command`): the same pipeline behind
/// `wasi:cli/run`, for `wasmtime run`. Embedded only to be written out.
pub static EMBEDDED_COMMAND: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runner_metrics_command.wasm"));

/// How to open the plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginOptions {
    pub limits: Limits,
    /// Where compiled machine code is cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Who serves the guest's filesystem. `Auto` (the default) also reads
    /// `RUNNER_METRICS_FILESYSTEM` (`confined`, `wasi` or `auto`).
    pub filesystem: Layer,
}

impl PluginOptions {
    /// Options with the default limits and the per-user cache directory.
    pub fn with_default_cache() -> Self {
        Self { cache_dir: default_cache_dir(), ..Self::default() }
    }
}

/// `$XDG_CACHE_HOME/runner-metrics`, else `$HOME/.cache/runner-metrics`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("runner-metrics"))
}

/// Where the compiled component came from, for diagnostics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    /// Compiled now (no cache, or a cache miss).
    Compiled,
    /// Loaded from the on-disk cache.
    Cache,
}

/// The engine, the compiled component and its pre-instance.
pub struct Plugin {
    engine: Engine,
    pre: PluginPre<HostState>,
    /// Compiled (or loaded from the cache) on the first collect: the
    /// commands that run none (`quarantine list`, `storage ...`) skip it.
    keeper: OnceLock<KeeperPre<KeeperState>>,
    /// The keeper's code, checked against the cache's MAC (or compiled)
    /// before the process was confined; `None`: compile it when needed.
    keeper_code: Option<cache::Code>,
    limits: Limits,
    stall_watch: Arc<StallWatch>,
    compiled_from: CompiledFrom,
    /// Cache entries refused (and compiled again), or why the cache was
    /// not used: for the caller to say once.
    cache_notes: Vec<String>,
    /// The guest's filesystem is [`crate::confined_fs`] (else wasmtime-wasi's).
    confined: bool,
    /// Why the fallback serves the filesystem, when it does on `Auto`.
    fallback: Option<String>,
    // Last: stops the ticker thread when the plugin goes away.
    _ticker: EpochTicker,
}

impl PluginOptions {
    /// What [`Plugin::open`] would refuse about these options, found
    /// without opening anything: a cache path that is not a directory, a
    /// filesystem layer this kernel cannot give. The CLI asks before it
    /// touches the storage root.
    pub fn check(&self) -> Result<()> {
        if let Some(dir) = &self.cache_dir {
            cache::check_dir(dir)?;
        }
        self.layer()?.resolve().map(drop)
    }

    /// Whether the guest's filesystem will be the confined one (else
    /// wasmtime-wasi's fallback).
    pub fn confined_fs(&self) -> Result<bool> {
        Ok(self.layer()?.resolve()?.0)
    }

    /// The embedded plugin build these options run: the fast build over
    /// the confined filesystem (which serves its `storage-files`), else the
    /// WASI one.
    pub fn component(&self) -> Result<&'static [u8]> {
        Ok(if self.confined_fs()? { EMBEDDED_FAST_COMPONENT } else { EMBEDDED_COMPONENT })
    }

    /// The filesystem layer asked for (`Auto` reads the environment).
    fn layer(&self) -> Result<Layer> {
        if self.filesystem == Layer::Auto {
            Layer::from_env()
        } else {
            Ok(self.filesystem)
        }
    }
}

impl Plugin {
    /// Opens the embedded component (its code and the keeper's from the
    /// cache when their MACs match, else compiled and cached).
    pub fn open(options: &PluginOptions) -> Result<Self> {
        Self::from_bytes(options.component()?, options)
    }

    /// Opens a component from bytes (tests use deliberately broken guests).
    pub fn from_bytes(wasm: &[u8], options: &PluginOptions) -> Result<Self> {
        let precompiled = Self::precompile(wasm, options, true)?;
        Self::open_precompiled(wasm, options, precompiled)
    }

    /// The plugin's and the keeper's code from the cache (checked against
    /// its MAC) or compiled and written there; nothing without a cache.
    /// `threads: false` compiles on this thread and starts none, for a
    /// process that confines itself afterwards (see [`cache`]).
    pub fn precompile(wasm: &[u8], options: &PluginOptions, threads: bool) -> Result<Precompiled> {
        let Some(dir) = &options.cache_dir else { return Ok(Precompiled::none()) };
        cache::check_dir(dir)?;
        let mut config = engine_config();
        config.parallel_compilation(threads);
        let engine = Engine::new(&config).anyhow().context("creating the wasmtime engine")?;
        Ok(Precompiled::prepare(&engine, dir, [wasm, EMBEDDED_KEEPER]))
    }

    /// Where the cache in `options` keeps the code of `wasm` (the plugin's
    /// or the keeper's), if there is a cache: for diagnostics and tests.
    pub fn cache_entry(wasm: &[u8], options: &PluginOptions) -> Result<Option<PathBuf>> {
        let Some(dir) = &options.cache_dir else { return Ok(None) };
        let engine = Engine::new(&engine_config()).anyhow().context("creating the wasmtime engine")?;
        Ok(Some(cache::CodeCache::open(dir)?.entry(&engine, wasm)))
    }

    /// Opens the component `wasm` with the code [`Plugin::precompile`]
    /// prepared for it (compiling what it has not).
    pub fn open_precompiled(wasm: &[u8], options: &PluginOptions, precompiled: Precompiled) -> Result<Self> {
        let engine = Engine::new(&engine_config()).anyhow().context("creating the wasmtime engine")?;
        let (component, compiled_from) = match &precompiled.plugin {
            // SAFETY: these bytes are what this program serialized: their
            // MAC, under a key that only this user can read, was checked
            // (or they were compiled just now), and their name covers the
            // engine's configuration.
            Some(code) => match unsafe { Component::deserialize(&engine, code) } {
                Ok(component) if precompiled.plugin_from_cache => (component, CompiledFrom::Cache),
                Ok(component) => (component, CompiledFrom::Compiled),
                Err(_) => (compile(&engine, wasm)?, CompiledFrom::Compiled),
            },
            None => (compile(&engine, wasm)?, CompiledFrom::Compiled),
        };
        let (confined, fallback) = options.layer()?.resolve()?;
        let mut linker = Linker::<HostState>::new(&engine);
        link_wasi(&mut linker, confined)?;
        PluginWorld::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(&mut linker, |state| state)
            .anyhow()
            .context("linking the host interface")?;
        // The fast build's own import (`wit/confined-fs`, world `plugin-fast`).
        linker
            .root()
            .func_wrap("looks-up-job-metrics", |mut store: wasmtime::StoreContextMut<'_, HostState>, (): ()| {
                store.data_mut().looks_up_job_metrics().map(|answer| (answer,))
            })
            .anyhow()
            .context("linking looks-up-job-metrics")?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .anyhow()
            .with_context(|| {
                let offered = if confined {
                    "WASI, the host interface and storage-files"
                } else {
                    "WASI and the host interface (storage-files needs the confined filesystem: the fast build does not run on the fallback)"
                };
                format!("the component imports something this host does not offer: {offered}")
            })?;
        let pre = PluginPre::new(instance_pre)
            .anyhow()
            .context("the component does not export the plugin world of github-runner:metrics@0.4.0")?;
        let stall_watch = Arc::new(StallWatch::default());
        let ticker =
            EpochTicker::start(&engine, Arc::clone(&stall_watch)).context("starting the epoch ticker thread")?;
        Ok(Self {
            engine,
            pre,
            keeper: OnceLock::new(),
            keeper_code: precompiled.keeper,
            cache_notes: precompiled.notes,
            limits: options.limits,
            stall_watch,
            compiled_from,
            confined,
            fallback,
            _ticker: ticker,
        })
    }

    /// A fresh sandbox that sees `storage_root` and nothing else.
    pub fn instance(&self, storage_root: &Path) -> Result<Instance> {
        Instance::new(&self.engine, &self.pre, &self.limits, Arc::clone(&self.stall_watch), storage_root, self.confined)
    }

    /// The keeper of one run over `storage_root` (which it sees read-only).
    pub(crate) fn keeper(&self, storage_root: &Path, options: &CollectOptions) -> Result<Keeper> {
        let pre = match self.keeper.get() {
            Some(pre) => pre,
            None => {
                // SAFETY: as for the plugin's code in `open_precompiled`.
                let cached = self
                    .keeper_code
                    .as_ref()
                    .and_then(|code| unsafe { Component::deserialize(&self.engine, code) }.ok());
                let component = match cached {
                    Some(component) => component,
                    None => compile(&self.engine, EMBEDDED_KEEPER)?,
                };
                let pre = crate::keeper::link(&self.engine, &component, self.confined)?;
                self.keeper.get_or_init(|| pre)
            }
        };
        Keeper::new(&self.engine, pre, &self.limits, storage_root, options, self.confined)
    }

    /// Whether the guest's filesystem is the confined layer (whose hook
    /// moves bounded storages), not wasmtime-wasi's fallback.
    pub(crate) fn is_confined(&self) -> bool {
        self.confined
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn compiled_from(&self) -> CompiledFrom {
        self.compiled_from
    }

    /// What the cache refused (an entry whose MAC did not match, compiled
    /// again and never run) or why it could not be used.
    pub fn cache_notes(&self) -> &[String] {
        &self.cache_notes
    }

    /// Who serves the guest's filesystem: `"confined"` (the kernel confines
    /// every lookup, see [`crate::confined_fs`]) or `"wasmtime-wasi"`.
    pub fn filesystem(&self) -> &'static str {
        if self.confined {
            "confined"
        } else {
            "wasmtime-wasi"
        }
    }

    /// Why the plugin fell back to wasmtime-wasi's filesystem on a kernel
    /// without `openat2`: to be said once, where the operator sees it.
    pub fn filesystem_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }
}

fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // For profiling the guest with `perf` (docs/benchmarks.md): wasmtime
    // writes /tmp/perf-PID.map naming the compiled functions.
    if std::env::var_os("RUNNER_METRICS_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component> {
    Component::new(engine, wasm).anyhow().context("compiling a runner-metrics component")
}
