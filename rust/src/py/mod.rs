//! `rmqfast._core`: thin PyO3 wrappers over the Rust core.

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};

use crate::codec::{
    FrameDecoder, FrameError as RsFrameError, FrameView, LanguageCode, RemotingCommand,
    SerializeType, DEFAULT_MAX_FRAME_SIZE,
};

mod json;
mod message;
mod producer;
mod proxy;

create_exception!(
    _core,
    FrameError,
    PyValueError,
    "An invalid remoting frame; `offset` is the byte where the problem was found."
);

/// Converts a Rust frame error into `FrameError` with its `offset` attribute set.
pub(crate) fn frame_err(py: Python<'_>, e: &RsFrameError) -> PyErr {
    let err = FrameError::new_err(e.to_string());
    // Setting an attribute on a fresh exception instance cannot fail in practice; if it did,
    // the message still carries the offset.
    let _ = err.value(py).setattr("offset", e.offset);
    err
}

/// A wait of `v` seconds from Python, never a panic: NaN and negatives wait not at all, and
/// anything over `cap_s` (infinity too) waits `cap_s`.
pub(crate) fn wait_seconds(v: f64, cap_s: f64) -> std::time::Duration {
    if v.is_nan() {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs_f64(v.clamp(0.0, cap_s))
}

fn parse_serialize_type(name: &str) -> PyResult<SerializeType> {
    match name.to_ascii_lowercase().as_str() {
        "json" => Ok(SerializeType::Json),
        "rocketmq" => Ok(SerializeType::RocketMq),
        _ => Err(PyValueError::new_err(format!(
            "serialize_type: expected \"json\" or \"rocketmq\", got {name:?}"
        ))),
    }
}

fn serialize_type_name(st: SerializeType) -> &'static str {
    match st {
        SerializeType::Json => "json",
        SerializeType::RocketMq => "rocketmq",
    }
}

fn parse_language(name: &str) -> PyResult<LanguageCode> {
    LanguageCode::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "language: expected a RocketMQ LanguageCode name (JAVA, CPP, DOTNET, PYTHON, DELPHI, \
             ERLANG, RUBY, OTHER, HTTP, GO, PHP, OMS, RUST, NODE_JS), got {name:?}"
        ))
    })
}

/// extFields values are strings on the wire; accept the scalars Python users will pass.
fn ext_value_to_string(key: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.to_str()?.to_owned());
    }
    if v.is_instance_of::<PyBool>() {
        return Ok(if v.is_truthy()? { "true" } else { "false" }.to_owned());
    }
    if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
        return Ok(v.str()?.to_str()?.to_owned());
    }
    Err(PyTypeError::new_err(format!(
        "ext_fields[{key:?}]: expected str, int, float or bool, got {}",
        v.get_type().name()?
    )))
}

fn normalize_ext_fields<'py>(
    py: Python<'py>,
    ext: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let Some(ext) = ext else { return Ok(out) };
    if ext.is_none() {
        return Ok(out);
    }
    let dict = ext.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "ext_fields: expected a dict of str to str, got {}",
            ext.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    for (k, v) in dict.iter() {
        let key = k
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("ext_fields: every key must be a str".to_string()))?;
        let key_str = key.to_str()?;
        out.set_item(key_str, ext_value_to_string(key_str, &v)?)?;
    }
    Ok(out)
}

/// A RocketMQ remoting request or response.
#[pyclass(module = "rmqfast._core", name = "RemotingCommand")]
pub struct PyRemotingCommand {
    #[pyo3(get, set)]
    code: i32,
    ext_fields: Py<PyDict>,
    body: Py<PyBytes>,
    #[pyo3(get, set)]
    opaque: i32,
    #[pyo3(get, set)]
    flag: i32,
    language: LanguageCode,
    #[pyo3(get, set)]
    version: i32,
    #[pyo3(get, set)]
    remark: Option<String>,
    serialize_type: SerializeType,
}

impl PyRemotingCommand {
    fn to_rust(&self, py: Python<'_>) -> PyResult<RemotingCommand> {
        let mut ext = std::collections::BTreeMap::new();
        for (k, v) in self.ext_fields.bind(py).iter() {
            let key: String = k.extract().map_err(|_| {
                PyTypeError::new_err("ext_fields: every key must be a str".to_string())
            })?;
            let value = ext_value_to_string(&key, &v)?;
            ext.insert(key, value);
        }
        Ok(RemotingCommand {
            code: self.code,
            language: self.language,
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: self.remark.clone(),
            ext_fields: ext,
            body: self.body.bind(py).as_bytes().to_vec(),
            serialize_type: self.serialize_type,
        })
    }

    pub(crate) fn from_rust(py: Python<'_>, c: RemotingCommand) -> PyResult<Self> {
        let ext = PyDict::new(py);
        for (k, v) in &c.ext_fields {
            ext.set_item(k, v)?;
        }
        Ok(PyRemotingCommand {
            code: c.code,
            ext_fields: ext.unbind(),
            body: PyBytes::new(py, &c.body).unbind(),
            opaque: c.opaque,
            flag: c.flag,
            language: c.language,
            version: c.version,
            remark: c.remark,
            serialize_type: c.serialize_type,
        })
    }
}

#[pymethods]
impl PyRemotingCommand {
    #[new]
    #[pyo3(signature = (code, ext_fields=None, body=None, opaque=0, flag=0, language="PYTHON", version=479, remark=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        code: i32,
        ext_fields: Option<&Bound<'_, PyAny>>,
        body: Option<&Bound<'_, PyAny>>,
        opaque: i32,
        flag: i32,
        language: &str,
        version: i32,
        remark: Option<String>,
    ) -> PyResult<Self> {
        let body = match body {
            None => PyBytes::new(py, b"").unbind(),
            Some(b) => body_bytes(py, b)?,
        };
        Ok(PyRemotingCommand {
            code,
            ext_fields: normalize_ext_fields(py, ext_fields)?.unbind(),
            body,
            opaque,
            flag,
            language: parse_language(language)?,
            version,
            remark,
            serialize_type: SerializeType::Json,
        })
    }

    /// Custom header fields (str to str).
    #[getter]
    fn ext_fields(&self, py: Python<'_>) -> Py<PyDict> {
        self.ext_fields.clone_ref(py)
    }

    #[setter]
    fn set_ext_fields(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ext_fields = normalize_ext_fields(py, Some(value))?.unbind();
        Ok(())
    }

    /// The body bytes.
    #[getter]
    fn body(&self, py: Python<'_>) -> Py<PyBytes> {
        self.body.clone_ref(py)
    }

    #[setter]
    fn set_body(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.body = body_bytes(py, value)?;
        Ok(())
    }

    /// The sender's language as RocketMQ names it (JAVA, PYTHON, ...).
    #[getter]
    fn language(&self) -> String {
        match self.language.name() {
            Some(n) => n.to_owned(),
            None => format!("UNKNOWN({})", self.language.0),
        }
    }

    #[setter]
    fn set_language(&mut self, value: &str) -> PyResult<()> {
        self.language = parse_language(value)?;
        Ok(())
    }

    /// The header encoding this command arrived in: "json" or "rocketmq".
    #[getter]
    fn serialize_type(&self) -> &'static str {
        serialize_type_name(self.serialize_type)
    }

    /// Whether bit 0 of flag marks this as a response.
    #[getter]
    fn is_response(&self) -> bool {
        self.flag & 1 != 0
    }

    /// Whether bit 1 of flag marks this request as oneway.
    #[getter]
    fn is_oneway(&self) -> bool {
        self.flag & 2 != 0
    }

    /// Encodes the command as one frame ("json" or "rocketmq" header; default: its own).
    #[pyo3(signature = (serialize_type=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        serialize_type: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let st = match serialize_type {
            Some(s) => parse_serialize_type(s)?,
            None => self.serialize_type,
        };
        let cmd = self.to_rust(py)?;
        let frame = py.detach(|| cmd.encode(st));
        match frame {
            Ok(f) => Ok(PyBytes::new(py, &f)),
            Err(e) => Err(frame_err(py, &e)),
        }
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<PyRemotingCommand>() else {
            return Ok(false);
        };
        let other = other.borrow();
        // Equal content is equal whatever header encoding either arrived in.
        let mut a = self.to_rust(py)?;
        let mut b = other.to_rust(py)?;
        a.serialize_type = SerializeType::Json;
        b.serialize_type = SerializeType::Json;
        Ok(a == b)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "RemotingCommand(code={}, opaque={}, flag={}, language={:?}, version={}, remark={:?}, \
             ext_fields={}, body=<{} bytes>)",
            self.code,
            self.opaque,
            self.flag,
            self.language(),
            self.version,
            self.remark,
            self.ext_fields.bind(py).repr()?,
            self.body.bind(py).as_bytes().len(),
        ))
    }
}

fn body_bytes(py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
    if let Ok(bytes) = b.cast::<PyBytes>() {
        return Ok(bytes.clone().unbind());
    }
    if let Ok(s) = b.cast::<PyString>() {
        return Ok(PyBytes::new(py, s.to_str()?.as_bytes()).unbind());
    }
    let v: Vec<u8> = b.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "body: expected bytes, bytearray or str, got {}",
            b.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    Ok(PyBytes::new(py, &v).unbind())
}

/// Decodes exactly one whole frame (length prefix included).
#[pyfunction]
fn decode(py: Python<'_>, frame: &[u8]) -> PyResult<PyRemotingCommand> {
    let result = py.detach(|| RemotingCommand::decode(frame));
    match result {
        Ok(c) => PyRemotingCommand::from_rust(py, c),
        Err(e) => Err(frame_err(py, &e)),
    }
}

/// `(code, flag, opaque, serialize_type, (header_start, header_end), (body_start, body_end))`
/// of one whole frame, found without decoding the header.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn view(
    py: Python<'_>,
    frame: &[u8],
) -> PyResult<(i32, i32, i32, &'static str, (usize, usize), (usize, usize))> {
    match FrameView::parse(frame) {
        Ok(v) => Ok((
            v.code,
            v.flag,
            v.opaque,
            serialize_type_name(v.serialize_type),
            (v.header.start, v.header.end),
            (v.body.start, v.body.end),
        )),
        Err(e) => Err(frame_err(py, &e)),
    }
}

/// Splits a byte stream into commands; errors name the offset within the whole stream.
#[pyclass(module = "rmqfast._core", name = "FrameDecoder")]
pub struct PyFrameDecoder {
    inner: FrameDecoder,
    /// A header that failed to decode after good frames in the same chunk: raised next call.
    failed: Option<RsFrameError>,
}

// The Python signature spells the default out so stubtest can compare it.
const _: () = assert!(DEFAULT_MAX_FRAME_SIZE == 16777216);

#[pymethods]
impl PyFrameDecoder {
    #[new]
    #[pyo3(signature = (max_frame_size=16777216))]
    fn new(max_frame_size: usize) -> PyResult<Self> {
        if max_frame_size < 8 {
            return Err(PyValueError::new_err(format!(
                "max_frame_size: expected at least 8 bytes, got {max_frame_size}"
            )));
        }
        Ok(PyFrameDecoder {
            inner: FrameDecoder::new(max_frame_size),
            failed: None,
        })
    }

    /// The frame size limit in bytes, length prefix included.
    #[getter]
    fn max_frame_size(&self) -> usize {
        self.inner.max_frame_size()
    }

    /// Bytes received that do not yet form a whole frame.
    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Appends data and returns every command it completes.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        if let Some(e) = &self.failed {
            return Err(frame_err(py, e));
        }
        let inner = &mut self.inner;
        let (commands, failed) = py.detach(|| {
            let frames = match inner.feed(data) {
                Ok(f) => f,
                Err(e) => return (Vec::new(), Some(e)),
            };
            let mut commands = Vec::with_capacity(frames.len());
            for (offset, f) in frames {
                match RemotingCommand::decode(&f) {
                    Ok(c) => commands.push(c),
                    Err(e) => return (commands, Some(e.shifted(offset))),
                }
            }
            (commands, None)
        });
        if let Some(e) = failed {
            if commands.is_empty() {
                self.failed = Some(e.clone());
                return Err(frame_err(py, &e));
            }
            // Hand over the commands that decoded; the stream is dead from the bad frame on.
            self.failed = Some(e);
        }
        let out = PyList::empty(py);
        for c in commands {
            out.append(Py::new(py, PyRemotingCommand::from_rust(py, c)?)?)?;
        }
        Ok(out)
    }
}

/// (host, port) of "host:port" or "[v6]:port": the project's one address parser. ValueError
/// says what was expected; callers add the field name.
#[pyfunction]
fn split_host_port(addr: &str) -> PyResult<(String, u16)> {
    crate::net::addr::split_host_port(addr)
        .map(|(h, p)| (h.to_owned(), p))
        .map_err(pyo3::exceptions::PyValueError::new_err)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_MAX_FRAME_SIZE", DEFAULT_MAX_FRAME_SIZE)?;
    m.add("FLAG_RESPONSE", crate::codec::wire::FLAG_RESPONSE)?;
    m.add("FLAG_ONEWAY", crate::codec::wire::FLAG_ONEWAY)?;
    m.add("FrameError", py.get_type::<FrameError>())?;
    m.add_class::<PyRemotingCommand>()?;
    m.add_class::<PyFrameDecoder>()?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(view, m)?)?;
    m.add_function(wrap_pyfunction!(json::json_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(split_host_port, m)?)?;
    message::register(m)?;
    producer::register(m)?;
    m.add_class::<proxy::PyProxyServer>()?;
    m.add_function(wrap_pyfunction!(proxy::proxy_stat_names, m)?)?;
    m.add_function(wrap_pyfunction!(proxy::proxy_config_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(proxy::policy_rule_keys, m)?)?;
    m.add_function(wrap_pyfunction!(proxy::proxy_restart_only_fields, m)?)?;
    m.add_function(wrap_pyfunction!(proxy::check_proxy_config, m)?)?;
    Ok(())
}
