//! `rmqfast._core.Producer`: the Rust producer driven from Python, sync (GIL released) and
//! asyncio. Sends run on the producer's own tokio runtime; pyo3-async-runtimes' future_into_py
//! hands their results to asyncio.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use pyo3::create_exception;
use pyo3::exceptions::{PyDeprecationWarning, PyException, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::codec::route::BrokerAddrs;
use crate::producer::message::validate_topic;
use crate::producer::{
    EncodedBatch, Message, Producer, ProducerConfig, ProducerError as RsProducerError, SendResult,
    TlsOptions,
};

create_exception!(
    _core,
    ProducerError,
    PyException,
    "A send or route lookup failed. `code` is the RocketMQ response code if a broker or name \
     server answered, else None; `retryable` says whether Java's producer would retry it."
);

fn producer_err(py: Python<'_>, e: &RsProducerError) -> PyErr {
    let err = ProducerError::new_err(e.message.clone());
    // Setting attributes on a fresh exception cannot fail in practice.
    let _ = err.value(py).setattr("code", e.code);
    let _ = err.value(py).setattr("retryable", e.retryable());
    err
}

/// Each producer owns a small runtime (not pyo3-async-runtimes' shared one), so a process
/// forked after some producer was created can still make new producers of its own.
fn new_runtime() -> PyResult<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rmqfast-producer")
        .enable_all()
        .build()
        .map_err(|e| PyOSError::new_err(format!("cannot start the producer's runtime: {e}")))
}

/// Aborts a spawned send when asyncio drops (cancels) the awaitable.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Runs `fut` on the producer's runtime and hands its result to asyncio.
fn spawn_for_asyncio<'py, F, T, P>(
    py: Python<'py>,
    handle: &Handle,
    fut: F,
    convert: fn(T) -> P,
) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = Result<T, RsProducerError>> + Send + 'static,
    T: Send + 'static,
    P: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let task = AbortOnDrop(handle.spawn(fut));
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        match task.await {
            Ok(Ok(v)) => Ok(convert(v)),
            Ok(Err(e)) => Err(Python::attach(|py| producer_err(py, &e))),
            // The runtime went away with the producer.
            Err(_) => Err(Python::attach(|py| {
                producer_err(py, &RsProducerError::closed())
            })),
        }
    })
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn seconds(name: &str, v: f64) -> PyResult<Duration> {
    if !(v.is_finite() && v > 0.0) {
        return Err(PyValueError::new_err(format!(
            "{name}: expected a positive number of seconds, got {v}"
        )));
    }
    Duration::try_from_secs_f64(v)
        .map_err(|_| PyValueError::new_err(format!("{name}: {v} seconds is out of range")))
}

/// Where a send request was stored.
#[pyclass(module = "rmqfast._core", name = "SendResult", frozen, get_all)]
pub struct PySendResult {
    /// The message's UNIQ_KEY; for a batch request, its messages' ids joined by commas.
    msg_id: String,
    /// The broker's message id (store host + commit log offset); comma-joined for a batch.
    offset_msg_id: String,
    queue_id: i32,
    /// Queue offset of the (first) message.
    queue_offset: i64,
    broker_name: String,
    topic: String,
}

impl From<SendResult> for PySendResult {
    fn from(r: SendResult) -> Self {
        PySendResult {
            msg_id: r.msg_id,
            offset_msg_id: r.offset_msg_id,
            queue_id: r.queue_id,
            queue_offset: r.queue_offset,
            broker_name: r.broker_name,
            topic: r.topic,
        }
    }
}

#[pymethods]
impl PySendResult {
    fn __repr__(&self) -> String {
        let id = if self.msg_id.len() > 70 {
            // By characters: a UNIQ_KEY set by the caller may hold non-ASCII text.
            let head: String = self.msg_id.chars().take(32).collect();
            format!("{head}...({} ids)", self.msg_id.split(',').count())
        } else {
            self.msg_id.clone()
        };
        format!(
            "SendResult(topic={:?}, broker_name={:?}, queue_id={}, queue_offset={}, msg_id={:?})",
            self.topic, self.broker_name, self.queue_id, self.queue_offset, id
        )
    }
}

/// A RocketMQ producer: routes from the name servers, round-robin queues, retries on another
/// broker, TLS and AK/SK signing; every send releases the GIL.
#[pyclass(module = "rmqfast._core", name = "Producer", frozen)]
pub struct PyProducer {
    inner: Producer,
    handle: Handle,
    /// Shut down when the Python object goes away.
    runtime: Mutex<Option<Runtime>>,
    /// The process that created it: a forked child must make its own producer.
    pid: u32,
}

impl Drop for PyProducer {
    fn drop(&mut self) {
        let runtime = self.runtime.get_mut().ok().and_then(Option::take);
        if std::process::id() == self.pid {
            self.inner.close();
            if let Some(rt) = runtime {
                // Never blocks, so it is safe even where the last reference dies in async code.
                rt.shutdown_background();
            }
        } else {
            // After fork the runtime's threads do not exist and its locks may be held:
            // touching it could hang, so the child leaks it.
            std::mem::forget(self.inner.clone());
            std::mem::forget(runtime);
        }
    }
}

/// Reads a str -> str dict into pairs (the Bound keys/values keep the &str alive).
fn dict_pairs<'py>(
    what: &dyn Fn() -> String,
    d: &Bound<'py, PyAny>,
) -> PyResult<Vec<(Bound<'py, PyString>, Bound<'py, PyString>)>> {
    if d.is_none() {
        return Ok(Vec::new());
    }
    let dict = d.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{}: expected a dict of str to str or None, got {}",
            what(),
            type_name(d)
        ))
    })?;
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let (Ok(k), Ok(v)) = (k.cast_into::<PyString>(), v.cast_into::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "{}: every key and value must be a str",
                what()
            )));
        };
        out.push((k, v));
    }
    Ok(out)
}

fn str_pairs<'a>(
    pairs: &'a [(Bound<'_, PyString>, Bound<'_, PyString>)],
) -> PyResult<Vec<(&'a str, &'a str)>> {
    pairs
        .iter()
        .map(|(k, v)| Ok((k.to_str()?, v.to_str()?)))
        .collect()
}

impl PyProducer {
    fn check_process(&self, py: Python<'_>) -> PyResult<()> {
        if std::process::id() == self.pid {
            return Ok(());
        }
        Err(producer_err(
            py,
            &RsProducerError::new(
                crate::producer::ErrorKind::Closed,
                None,
                format!(
                    "this Producer was created in process {} before a fork; create a new \
                     Producer in this process",
                    self.pid
                ),
            ),
        ))
    }

    fn message(
        &self,
        py: Python<'_>,
        body: &Bound<'_, PyAny>,
        keys: Option<&str>,
        tags: Option<&str>,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Message> {
        let body = if let Ok(b) = body.cast::<PyBytes>() {
            Bytes::copy_from_slice(b.as_bytes())
        } else if let Ok(b) = body.cast::<PyByteArray>() {
            Bytes::from(b.to_vec())
        } else {
            return Err(PyTypeError::new_err(format!(
                "body: expected bytes, got {}",
                type_name(body)
            )));
        };
        let pairs = match properties {
            Some(p) => dict_pairs(&|| "properties".to_owned(), p)?,
            None => Vec::new(),
        };
        let pairs = str_pairs(&pairs)?;
        self.inner
            .message(body, keys, tags, pairs)
            .map_err(|e| producer_err(py, &e))
    }

    fn batch(&self, py: Python<'_>, messages: &Bound<'_, PyAny>) -> PyResult<EncodedBatch> {
        let list = messages.cast::<PyList>().map_err(|_| {
            PyTypeError::new_err(format!(
                "messages: expected a list of (bytes, dict | None) tuples, got {}",
                type_name(messages)
            ))
        })?;
        let n = list.len();
        let hint = match list.iter().next() {
            Some(first) => first
                .cast::<PyTuple>()
                .ok()
                .and_then(|t| t.get_item(0).ok())
                .and_then(|b| b.cast::<PyBytes>().ok().map(|b| b.as_bytes().len()))
                .map(|len| n.saturating_mul(len + 80))
                .unwrap_or(0),
            None => 0,
        };
        let mut enc = self
            .inner
            .batch_encoder(hint.min(self.inner.config().max_message_size * 4));
        for (i, item) in list.iter().enumerate() {
            let shape_err = || {
                PyTypeError::new_err(format!(
                    "messages[{i}]: expected a (bytes, dict | None) tuple, got {}",
                    type_name(&item)
                ))
            };
            let tup = item.cast::<PyTuple>().map_err(|_| shape_err())?;
            if tup.len() != 2 {
                return Err(shape_err());
            }
            let body = tup.get_item(0)?;
            let props = tup.get_item(1)?;
            let pairs = dict_pairs(&|| format!("messages[{i}][1]"), &props)?;
            let pairs = str_pairs(&pairs)?;
            let pushed = if let Ok(b) = body.cast::<PyBytes>() {
                enc.push(b.as_bytes(), pairs)
            } else if let Ok(b) = body.cast::<PyByteArray>() {
                enc.push(&b.to_vec(), pairs)
            } else {
                return Err(PyTypeError::new_err(format!(
                    "messages[{i}][0]: expected bytes, got {}",
                    type_name(&body)
                )));
            };
            pushed.map_err(|e| producer_err(py, &Producer::invalid_message(&e)))?;
        }
        Ok(enc.finish())
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn results(v: Vec<SendResult>) -> Vec<PySendResult> {
    v.into_iter().map(PySendResult::from).collect()
}

fn check_topic(topic: &str) -> PyResult<()> {
    validate_topic(topic).map_err(PyValueError::new_err)
}

fn route_dict<'py>(
    py: Python<'py>,
    route: &crate::producer::CachedRoute,
    stale: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let json = py.import("json")?;
    let d = json.call_method1("loads", (PyBytes::new(py, &route.data.to_json()),))?;
    let queues = PyList::empty(py);
    for q in &route.publish.queues {
        queues.append((route.publish.broker(*q).name.as_str(), q.queue_id))?;
    }
    d.set_item("write_queues", queues)?;
    d.set_item("stale", stale)?;
    d.set_item("fetched_at", route.fetched_at_ms as f64 / 1000.0)?;
    d.set_item("from_default_topic", route.from_default_topic)?;
    Ok(d)
}

#[pymethods]
impl PyProducer {
    #[new]
    #[pyo3(signature = (
        nameservers,
        producer_group="rmqfast_producer",
        timeout=3.0,
        use_tls=false,
        tls_ca_file=None,
        tls_verify=true,
        tls_server_name=None,
        access_key=None,
        secret_key=None,
        retry_times=2,
        route_refresh_interval=30.0,
        max_message_size=4194304,
        tls_insecure_skip_verify=None,
        auto_create_topic=false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        nameservers: &Bound<'_, PyAny>,
        producer_group: &str,
        timeout: f64,
        use_tls: bool,
        tls_ca_file: Option<String>,
        tls_verify: bool,
        tls_server_name: Option<String>,
        access_key: Option<String>,
        secret_key: Option<String>,
        retry_times: i64,
        route_refresh_interval: f64,
        max_message_size: i64,
        tls_insecure_skip_verify: Option<bool>,
        auto_create_topic: bool,
    ) -> PyResult<Self> {
        // The old spelling of `tls_verify=False`, kept for a while.
        let skip_verify = match tls_insecure_skip_verify {
            None => !tls_verify,
            Some(skip) => {
                PyErr::warn(
                    py,
                    &py.get_type::<PyDeprecationWarning>(),
                    c"tls_insecure_skip_verify is deprecated: use tls_verify=False",
                    1,
                )?;
                if !tls_verify && !skip {
                    return Err(PyValueError::new_err(
                        "tls_verify: False contradicts tls_insecure_skip_verify=False; \
                         give tls_verify only",
                    ));
                }
                skip || !tls_verify
            }
        };
        let nameservers: Vec<String> = if nameservers.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "nameservers: expected a list of HOST:PORT strings, got a str",
            ));
        } else {
            nameservers.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "nameservers: expected a list of HOST:PORT strings, got {}",
                    type_name(nameservers)
                ))
            })?
        };
        if !use_tls {
            for (set, name) in [
                (tls_ca_file.is_some(), "tls_ca_file"),
                (skip_verify, "tls_verify"),
                (tls_server_name.is_some(), "tls_server_name"),
            ] {
                if set {
                    return Err(PyValueError::new_err(format!(
                        "{name}: only applies with use_tls=True"
                    )));
                }
            }
        }
        let credentials = match (access_key, secret_key) {
            (None, None) => None,
            (Some(ak), Some(sk)) => Some((ak, sk)),
            (Some(_), None) => {
                return Err(PyValueError::new_err(
                    "secret_key: required when access_key is given",
                ))
            }
            (None, Some(_)) => {
                return Err(PyValueError::new_err(
                    "access_key: required when secret_key is given",
                ))
            }
        };
        let retry_times = u32::try_from(retry_times)
            .ok()
            .filter(|r| *r <= 100)
            .ok_or_else(|| {
                PyValueError::new_err(format!("retry_times: expected 0 to 100, got {retry_times}"))
            })?;
        let max_message_size = usize::try_from(max_message_size).map_err(|_| {
            PyValueError::new_err(format!(
                "max_message_size: expected a positive number of bytes, got {max_message_size}"
            ))
        })?;
        let config = ProducerConfig {
            nameservers,
            producer_group: producer_group.to_owned(),
            timeout: seconds("timeout", timeout)?,
            tls: use_tls.then_some(TlsOptions {
                ca_file: tls_ca_file,
                insecure_skip_verify: skip_verify,
                server_name: tls_server_name,
            }),
            credentials,
            retry_times,
            route_refresh_interval: seconds("route_refresh_interval", route_refresh_interval)?,
            max_message_size,
            auto_create_topic,
        };
        let runtime = new_runtime()?;
        let handle = runtime.handle().clone();
        let inner = Producer::new(config, &handle).map_err(PyValueError::new_err)?;
        Ok(PyProducer {
            inner,
            handle,
            runtime: Mutex::new(Some(runtime)),
            pid: std::process::id(),
        })
    }

    /// Sends one message (SEND_MESSAGE_V2) and waits for the broker; releases the GIL.
    #[pyo3(signature = (topic, body, keys=None, tags=None, properties=None))]
    fn send(
        &self,
        py: Python<'_>,
        topic: &str,
        body: &Bound<'_, PyAny>,
        keys: Option<&str>,
        tags: Option<&str>,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PySendResult> {
        self.check_process(py)?;
        check_topic(topic)?;
        let msg = self.message(py, body, keys, tags, properties)?;
        let (p, h) = (&self.inner, &self.handle);
        let r = py.detach(|| h.block_on(p.send(topic, &msg)));
        r.map(PySendResult::from).map_err(|e| producer_err(py, &e))
    }

    /// Sends messages as SEND_BATCH_MESSAGE requests, split so each body stays within
    /// max_message_size; returns one SendResult per request sent; releases the GIL.
    fn send_batch(
        &self,
        py: Python<'_>,
        topic: &str,
        messages: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<PySendResult>> {
        self.check_process(py)?;
        check_topic(topic)?;
        let batch = self.batch(py, messages)?;
        let (p, h) = (&self.inner, &self.handle);
        let r = py.detach(|| h.block_on(p.send_batch(topic, &batch)));
        r.map(|v| v.into_iter().map(PySendResult::from).collect())
            .map_err(|e| producer_err(py, &e))
    }

    /// `send` for asyncio: returns an awaitable SendResult.
    #[pyo3(signature = (topic, body, keys=None, tags=None, properties=None))]
    fn send_async<'py>(
        &self,
        py: Python<'py>,
        topic: &str,
        body: &Bound<'py, PyAny>,
        keys: Option<&str>,
        tags: Option<&str>,
        properties: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_process(py)?;
        check_topic(topic)?;
        let msg = self.message(py, body, keys, tags, properties)?;
        let p = self.inner.clone();
        let topic = topic.to_owned();
        let fut = async move { p.send(&topic, &msg).await };
        spawn_for_asyncio(py, &self.handle, fut, PySendResult::from)
    }

    /// `send_batch` for asyncio: returns an awaitable list of SendResult.
    fn send_batch_async<'py>(
        &self,
        py: Python<'py>,
        topic: &str,
        messages: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_process(py)?;
        check_topic(topic)?;
        let batch = self.batch(py, messages)?;
        let p = self.inner.clone();
        let topic = topic.to_owned();
        let fut = async move { p.send_batch(&topic, &batch).await };
        spawn_for_asyncio(py, &self.handle, fut, results)
    }

    /// The topic's route as cached (looked up first if not cached yet), with `write_queues`,
    /// `stale` (the last refresh failed), `fetched_at` (Unix seconds) and `from_default_topic`
    /// (auto_create_topic: TBW102's route, until the name servers know the topic).
    fn route<'py>(&self, py: Python<'py>, topic: &str) -> PyResult<Bound<'py, PyAny>> {
        self.check_process(py)?;
        check_topic(topic)?;
        let (p, h) = (&self.inner, &self.handle);
        let r = py.detach(|| h.block_on(p.route(topic)));
        match r {
            Ok((route, stale)) => route_dict(py, &route, stale),
            Err(e) => Err(producer_err(py, &e)),
        }
    }

    /// Counters by name (requests, responses, timeouts, retries, route_refreshes, ...,
    /// errors_code_<N>).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.stats() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Stops the route refresh and closes every connection; later sends raise ProducerError.
    fn close(&self) {
        if std::process::id() == self.pid {
            self.inner.close();
        }
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Producer(nameservers={:?}, producer_group={:?}, use_tls={}, closed={})",
            c.nameservers,
            c.producer_group,
            py_bool(c.tls.is_some()),
            if self.inner.is_closed() {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// Adds Producer, SendResult and ProducerError to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let err = py.get_type::<ProducerError>();
    // Class-level defaults, so the attributes exist (and type-check) on every instance.
    err.setattr("code", py.None())?;
    err.setattr("retryable", false)?;
    m.add("ProducerError", err)?;
    m.add_class::<PyProducer>()?;
    m.add_class::<PySendResult>()?;
    Ok(())
}
