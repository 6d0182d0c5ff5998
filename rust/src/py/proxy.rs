//! `rmqfast._core.ProxyServer`: the Rust proxy driven from Python.

use crate::sync::lock;
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::codec::codes::{request_name, response_name};
use crate::proxy::stats::{HistogramSnapshot, ProxyStats, LATENCY_BOUNDS_US, LATENCY_CODES};
use crate::proxy::{ProxyConfig, ProxyServer};

/// The proxy's Rust data path; `rmqfast.proxy.Proxy` wraps it.
#[pyclass(module = "rmqfast._core", name = "ProxyServer")]
pub struct PyProxyServer {
    /// The config `start` uses: the one given, or the last one reloaded.
    config: Mutex<ProxyConfig>,
    inner: Mutex<Option<ProxyServer>>,
    /// Stats of the last server started, readable after it stops.
    stats: Mutex<Option<std::sync::Arc<ProxyStats>>>,
    /// The access log of the last server started, drained after it stops too.
    access: Mutex<Option<std::sync::Arc<crate::proxy::access::AccessLog>>>,
    /// The drain's half of the access log's two buffers (`AccessLog::take_into`).
    drained: Mutex<Vec<u8>>,
}

fn histogram_dict<'py>(py: Python<'py>, h: &HistogramSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("bounds_us", LATENCY_BOUNDS_US.to_vec())?;
    d.set_item("buckets", h.buckets.clone())?;
    d.set_item("count", h.count)?;
    d.set_item("sum_us", h.sum_us)?;
    Ok(d)
}

/// The stats snapshot as a dict: counters, gauges and latency histograms.
pub(crate) fn stats_dict<'py>(py: Python<'py>, s: &ProxyStats) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let counters = PyDict::new(py);
    for (k, v) in s.c.counters() {
        counters.set_item(k, v)?;
    }
    let gauges = PyDict::new(py);
    for (k, v) in s.c.gauges() {
        gauges.set_item(k, v)?;
    }
    out.set_item("counters", counters)?;
    out.set_item("gauges", gauges)?;
    out.set_item(
        "request_time",
        histogram_dict(py, &s.request_time.snapshot())?,
    )?;
    let by_code = PyDict::new(py);
    for (i, h) in s.request_time_by_code.iter().enumerate() {
        let snap = h.snapshot();
        if snap.count == 0 {
            continue;
        }
        let name = match LATENCY_CODES.get(i) {
            Some(&c) => request_name(c)
                .map(str::to_owned)
                .unwrap_or_else(|| c.to_string()),
            None => "OTHER".to_owned(),
        };
        by_code.set_item(name, histogram_dict(py, &snap)?)?;
    }
    out.set_item("request_time_by_code", by_code)?;
    let denied = PyDict::new(py);
    for (code, n) in crate::sync::lock(&s.denied_by_code).iter() {
        let name = request_name(*code)
            .map(str::to_owned)
            .unwrap_or_else(|| code.to_string());
        denied.set_item(name, *n)?;
    }
    out.set_item("request_denied_by_code", denied)?;
    let topics = PyList::empty(py);
    for t in s.topics.snapshot() {
        let d = PyDict::new(py);
        d.set_item("topic", &t.topic)?;
        d.set_item("consumer_group", &t.consumer_group)?;
        d.set_item("broker", &t.broker)?;
        d.set_item("messages_in", t.messages_in)?;
        d.set_item("bytes_in", t.bytes_in)?;
        d.set_item("messages_out", t.messages_out)?;
        d.set_item("bytes_out", t.bytes_out)?;
        d.set_item("requests", t.requests)?;
        let errors = PyDict::new(py);
        for (code, n) in &t.errors {
            let name = response_name(*code)
                .map(str::to_owned)
                .unwrap_or_else(|| code.to_string());
            errors.set_item(name, *n)?;
        }
        d.set_item("errors", errors)?;
        d.set_item("latency", histogram_dict(py, &t.latency)?)?;
        topics.append(d)?;
    }
    out.set_item("topics", topics)?;
    out.set_item(
        "topic_label_overflow",
        s.topics.overflow.load(std::sync::atomic::Ordering::Relaxed),
    )?;
    Ok(out)
}

#[pymethods]
impl PyProxyServer {
    /// Validates the JSON configuration; nothing is opened until `start`.
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let config = ProxyConfig::from_json(config_json).map_err(PyValueError::new_err)?;
        Ok(PyProxyServer {
            config: Mutex::new(config),
            inner: Mutex::new(None),
            stats: Mutex::new(None),
            access: Mutex::new(None),
            drained: Default::default(),
        })
    }

    /// Opens the name-server listener and starts the data path (raises OSError if it cannot bind).
    ///
    /// `inner` is locked only with the GIL released, here and in `open_broker` and `reload`:
    /// held across a release, a thread that holds the GIL and waits for it (`running`, from the
    /// admin endpoint) would wait forever for a thread that waits for the GIL.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut guard = lock(&self.inner);
            if guard.as_ref().is_some_and(ProxyServer::is_running) {
                return Err(PyRuntimeError::new_err("the proxy is already running"));
            }
            let config = lock(&self.config).clone();
            let server = ProxyServer::start(config).map_err(PyOSError::new_err)?;
            *lock(&self.stats) = Some(server.stats_handle());
            *lock(&self.access) = Some(server.access_log());
            *guard = Some(server);
            Ok(())
        })
    }

    /// Stops accepting, lets in-flight requests finish for up to `timeout` seconds, then closes.
    #[pyo3(signature = (timeout=5.0))]
    fn stop(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let server = lock(&self.inner).take();
        if let Some(mut s) = server {
            let t = super::wait_seconds(timeout, 86_400.0);
            py.detach(move || s.stop(t));
        }
        Ok(())
    }

    /// Whether the proxy is running.
    #[getter]
    fn running(&self) -> bool {
        lock(&self.inner)
            .as_ref()
            .is_some_and(ProxyServer::is_running)
    }

    /// The address clients use as their name server ("host:port").
    #[getter]
    fn namesrv_addr(&self) -> PyResult<String> {
        let guard = lock(&self.inner);
        let s = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the proxy is not running"))?;
        Ok(s.namesrv_addr().to_string())
    }

    /// Real broker address → the proxy address clients are given for it.
    fn broker_listeners(&self) -> Vec<(String, String)> {
        lock(&self.inner)
            .as_ref()
            .map(ProxyServer::broker_listeners)
            .unwrap_or_default()
    }

    /// Opens the listener for a real broker address now (normally done by route lookups).
    fn open_broker(&self, py: Python<'_>, real_addr: &str) -> PyResult<String> {
        py.detach(|| {
            let guard = lock(&self.inner);
            let s = guard
                .as_ref()
                .ok_or_else(|| PyRuntimeError::new_err("the proxy is not running"))?;
            s.open_broker(real_addr).map_err(PyOSError::new_err)
        })
    }

    /// Every access log line buffered (newline-terminated), once 64 KiB are buffered or
    /// `timeout` seconds have passed; b"" if none came or the proxy was never started.
    #[pyo3(signature = (timeout=0.0))]
    fn access_log_take<'py>(&self, py: Python<'py>, timeout: f64) -> Bound<'py, PyBytes> {
        let Some(access) = lock(&self.access).clone() else {
            return PyBytes::new(py, b"");
        };
        let t = super::wait_seconds(timeout, 3600.0);
        let mut out = std::mem::take(&mut *lock(&self.drained));
        let out = py.detach(move || {
            access.take_into(&mut out, t);
            out
        });
        let bytes = PyBytes::new(py, &out);
        *lock(&self.drained) = out;
        bytes
    }

    /// Counts `lines` of the access log that their destination failed to take
    /// (`access_log_lost`).
    fn access_log_lost(&self, lines: u64) {
        if let Some(access) = lock(&self.access).as_ref() {
            access.note_lost(lines);
        }
    }

    /// Puts a new config (JSON, as for the constructor) in place while the proxy runs, whole or
    /// not at all: ValueError naming the field if it is rejected (the running config stays).
    /// Returns the restart-only fields that differed and kept their running values.
    fn reload(&self, py: Python<'_>, config_json: &str) -> PyResult<Vec<&'static str>> {
        py.detach(|| {
            let guard = lock(&self.inner);
            let s = guard
                .as_ref()
                .ok_or_else(|| PyRuntimeError::new_err("the proxy is not running"))?;
            let config = match ProxyConfig::from_json(config_json) {
                Ok(c) => c,
                Err(e) => {
                    s.note_reload_failure();
                    return Err(PyValueError::new_err(e));
                }
            };
            let kept = s.reload(config.clone()).map_err(PyValueError::new_err)?;
            *lock(&self.config) = config;
            Ok(kept)
        })
    }

    /// Counts a reload rejected before it reached the data path (in `config_reload_failures`).
    fn note_reload_failure(&self) {
        if let Some(s) = lock(&self.inner).as_ref() {
            s.note_reload_failure();
        }
    }

    /// A snapshot of every statistic.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let handle = lock(&self.stats).clone();
        match handle {
            Some(s) => stats_dict(py, &s),
            None => stats_dict(py, &ProxyStats::default()),
        }
    }
}

type NameHelp = (&'static str, &'static str);

/// (name, help) of every proxy counter and gauge, for the Prometheus exposition.
#[pyfunction]
pub(crate) fn proxy_stat_names() -> (Vec<NameHelp>, Vec<NameHelp>) {
    (
        crate::proxy::stats::COUNTER_NAMES.to_vec(),
        crate::proxy::stats::GAUGE_NAMES.to_vec(),
    )
}

/// The default of every proxy config field that has one, by its config name (Rust's, the one
/// list; Python's `ProxyConfig` takes its defaults from here).
#[pyfunction]
pub(crate) fn proxy_config_defaults(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let text = serde_json::Value::Object(crate::proxy::config::ProxyConfig::defaults()).to_string();
    py.import("json")?.call_method1("loads", (text,))
}

/// The config fields a reload cannot change in a running proxy.
#[pyfunction]
pub(crate) fn proxy_restart_only_fields() -> Vec<&'static str> {
    crate::proxy::RESTART_ONLY.to_vec()
}

/// The keys a `[[policy]]` rule may have.
#[pyfunction]
pub(crate) fn policy_rule_keys() -> Vec<&'static str> {
    crate::proxy::policy::RULE_KEYS.to_vec()
}

/// Checks a proxy config (the JSON `ProxyConfig.to_core_json` writes) the way the proxy will:
/// ValueError naming the first wrong field and what was expected.
#[pyfunction]
pub(crate) fn check_proxy_config(config_json: &str) -> PyResult<()> {
    crate::proxy::config::ProxyConfig::from_json(config_json)
        .map(|_| ())
        .map_err(pyo3::exceptions::PyValueError::new_err)
}
