//! Python wrappers for properties, batches, stored messages, route data and the code tables.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString};
use serde_json::{Map, Value};

use crate::codec::codes::{REQUEST_CODES, RESPONSE_CODES};
use crate::codec::message::{self as msg, BatchMessage, MessageError as RsMessageError};
use crate::codec::properties::{
    decode_properties as decode_props, encode_properties as encode_props,
};
use crate::codec::route::{self, BrokerAddrs, BrokerData, QueueData, RouteError as RsRouteError};

create_exception!(
    _core,
    MessageError,
    PyValueError,
    "An invalid batch or stored-message body; `offset` is the byte at fault, `record` the start \
     of its record (for encoding, both are the message's index)."
);

create_exception!(
    _core,
    RouteError,
    PyValueError,
    "Route JSON that does not parse; `offset` is the byte where parsing stopped, or None."
);

fn message_err(py: Python<'_>, e: &RsMessageError) -> PyErr {
    let err = MessageError::new_err(e.to_string());
    // Setting attributes on a fresh exception cannot fail in practice; the message has both.
    let _ = err.value(py).setattr("offset", e.offset);
    let _ = err.value(py).setattr("record", e.record);
    err
}

fn route_err(py: Python<'_>, e: &RsRouteError) -> PyErr {
    let err = RouteError::new_err(e.to_string());
    let _ = err.value(py).setattr("offset", e.offset);
    err
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Bytes from bytes, bytearray or str (UTF-8).
fn bytes_arg(what: &str, v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = v.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "{what}: expected bytes, bytearray or str, got {}",
        type_name(v)
    )))
}

/// Encoded properties from a dict of str to str, in the dict's order.
fn props_arg(what: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    if v.is_none() {
        return Ok(String::new());
    }
    let dict = v.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: expected a dict of str to str, got {}",
            type_name(v)
        ))
    })?;
    let mut pairs = Vec::with_capacity(dict.len());
    for (k, val) in dict.iter() {
        let k: String = k
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("{what}: every key must be a str")))?;
        let val: String = val.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}[{k:?}]: expected a str, got {}",
                type_name(&val)
            ))
        })?;
        pairs.push((k, val));
    }
    Ok(encode_props(&pairs))
}

fn props_dict<'py>(py: Python<'py>, pairs: &[(String, String)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in pairs {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// Encodes a dict of properties as `name\x01value\x02...`.
#[pyfunction]
fn encode_properties(properties: &Bound<'_, PyAny>) -> PyResult<String> {
    props_arg("properties", properties)
}

/// Decodes `name\x01value\x02...` as Java does (the last of repeated names wins).
#[pyfunction]
fn decode_properties<'py>(py: Python<'py>, properties: &str) -> PyResult<Bound<'py, PyDict>> {
    props_dict(py, &decode_props(properties))
}

/// One message of a SEND_BATCH_MESSAGE body: flag, body and properties.
#[pyclass(frozen, module = "rmqfast._core", name = "BatchMessage")]
pub struct PyBatchMessage {
    inner: BatchMessage,
}

#[pymethods]
impl PyBatchMessage {
    #[new]
    #[pyo3(signature = (body, properties=None, flag=0))]
    fn new(
        body: &Bound<'_, PyAny>,
        properties: Option<&Bound<'_, PyAny>>,
        flag: i32,
    ) -> PyResult<Self> {
        let properties = match properties {
            Some(p) => props_arg("properties", p)?,
            None => String::new(),
        };
        Ok(PyBatchMessage {
            inner: BatchMessage {
                flag,
                body: bytes_arg("body", body)?,
                properties,
            },
        })
    }

    /// The body.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.body)
    }

    /// The properties, decoded.
    #[getter]
    fn properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        props_dict(py, &decode_props(&self.inner.properties))
    }

    /// The free-form int32 flag.
    #[getter]
    fn flag(&self) -> i32 {
        self.inner.flag
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyBatchMessage>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "BatchMessage(body=<{} bytes>, properties={}, flag={})",
            self.inner.body.len(),
            self.properties(py)?.repr()?,
            self.inner.flag
        ))
    }
}

fn batch_item(i: usize, v: &Bound<'_, PyAny>) -> PyResult<BatchMessage> {
    if let Ok(m) = v.cast::<PyBatchMessage>() {
        return Ok(m.get().inner.clone());
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut m = BatchMessage::default();
        let mut has_body = false;
        for (k, val) in d.iter() {
            let key: String = k.extract().unwrap_or_default();
            match key.as_str() {
                "body" => {
                    m.body = bytes_arg(&format!("messages[{i}]['body']"), &val)?;
                    has_body = true;
                }
                "properties" => {
                    m.properties = props_arg(&format!("messages[{i}]['properties']"), &val)?
                }
                "flag" => {
                    m.flag = val.extract().map_err(|_| {
                        PyTypeError::new_err(format!(
                            "messages[{i}]['flag']: expected an int32, got {}",
                            type_name(&val)
                        ))
                    })?
                }
                _ => {
                    return Err(PyTypeError::new_err(format!(
                        "messages[{i}]: unexpected key {}; expected body, properties or flag",
                        k.repr()?
                    )))
                }
            }
        }
        if !has_body {
            return Err(PyTypeError::new_err(format!(
                "messages[{i}]: the dict has no 'body'"
            )));
        }
        return Ok(m);
    }
    if v.is_instance_of::<PyBytes>() || v.is_instance_of::<PyByteArray>() {
        return Ok(BatchMessage::new(bytes_arg("", v)?, ""));
    }
    Err(PyTypeError::new_err(format!(
        "messages[{i}]: expected BatchMessage, dict or bytes, got {}",
        type_name(v)
    )))
}

/// Encodes a SEND_BATCH_MESSAGE body from BatchMessage objects, dicts or plain bodies.
#[pyfunction]
fn encode_batch<'py>(
    py: Python<'py>,
    messages: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut batch = Vec::new();
    for (i, item) in messages.try_iter()?.enumerate() {
        batch.push(batch_item(i, &item?)?);
    }
    match py.detach(|| msg::encode_batch(&batch)) {
        Ok(bytes) => Ok(PyBytes::new(py, &bytes)),
        Err(e) => Err(message_err(py, &e)),
    }
}

/// Decodes a SEND_BATCH_MESSAGE body.
#[pyfunction]
fn decode_batch(py: Python<'_>, body: &[u8]) -> PyResult<Vec<PyBatchMessage>> {
    match py.detach(|| msg::decode_batch(body)) {
        Ok(v) => Ok(v
            .into_iter()
            .map(|inner| PyBatchMessage { inner })
            .collect()),
        Err(e) => Err(message_err(py, &e)),
    }
}

/// A stored message from a pull, pop or check-transaction body.
#[pyclass(frozen, module = "rmqfast._core", name = "MessageExt")]
pub struct PyMessageExt {
    inner: msg::MessageExt,
}

#[pymethods]
impl PyMessageExt {
    /// Topic.
    #[getter]
    fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The body, inflated if it was compressed.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.body)
    }

    /// The properties.
    #[getter]
    fn properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        props_dict(py, &self.inner.properties)
    }

    /// The TAGS property.
    #[getter]
    fn tags(&self) -> Option<&str> {
        self.inner.tags()
    }

    /// The KEYS property (several keys are separated by a space).
    #[getter]
    fn keys(&self) -> Option<&str> {
        self.inner.keys()
    }

    /// What a Java consumer shows as msgId: the UNIQ_KEY property, else the offset message id.
    #[getter]
    fn msg_id(&self) -> String {
        self.inner.msg_id()
    }

    /// Store host, port and commit-log offset in upper hex (the broker's message id).
    #[getter]
    fn offset_msg_id(&self) -> String {
        self.inner.offset_msg_id()
    }

    /// The UNIQ_KEY property: the client-generated message id.
    #[getter]
    fn uniq_key(&self) -> Option<&str> {
        self.inner.uniq_key()
    }

    /// Queue id.
    #[getter]
    fn queue_id(&self) -> i32 {
        self.inner.queue_id
    }

    /// Offset within the consume queue.
    #[getter]
    fn queue_offset(&self) -> i64 {
        self.inner.queue_offset
    }

    /// Physical offset in the commit log.
    #[getter]
    fn commit_log_offset(&self) -> i64 {
        self.inner.commit_log_offset
    }

    /// System flag bits (COMPRESSED cleared once the body is inflated).
    #[getter]
    fn sys_flag(&self) -> i32 {
        self.inner.sys_flag
    }

    /// The producer's free-form flag.
    #[getter]
    fn flag(&self) -> i32 {
        self.inner.flag
    }

    /// Producer time, epoch ms.
    #[getter]
    fn born_timestamp(&self) -> i64 {
        self.inner.born_timestamp
    }

    /// Producer address, "ip:port" ("[ip6]:port" for IPv6).
    #[getter]
    fn born_host(&self) -> String {
        self.inner.born_host.to_string()
    }

    /// Broker store time, epoch ms.
    #[getter]
    fn store_timestamp(&self) -> i64 {
        self.inner.store_timestamp
    }

    /// Broker address, "ip:port" ("[ip6]:port" for IPv6).
    #[getter]
    fn store_host(&self) -> String {
        self.inner.store_host.to_string()
    }

    /// Times the message was redelivered.
    #[getter]
    fn reconsume_times(&self) -> i32 {
        self.inner.reconsume_times
    }

    /// Commit-log offset of the half message, for transaction messages.
    #[getter]
    fn prepared_transaction_offset(&self) -> i64 {
        self.inner.prepared_transaction_offset
    }

    /// CRC32 of the stored body, masked to 31 bits.
    #[getter]
    fn body_crc(&self) -> i32 {
        self.inner.body_crc
    }

    /// Record size in bytes.
    #[getter]
    fn store_size(&self) -> i32 {
        self.inner.store_size
    }

    /// Magic code: -626843481 (V1) or -626843477 (V2).
    #[getter]
    fn magic(&self) -> i32 {
        self.inner.magic
    }

    fn __repr__(&self) -> String {
        let m = &self.inner;
        let tags = m.tags().map_or("None".to_owned(), |t| format!("{t:?}"));
        format!(
            "MessageExt(topic={:?}, queue_id={}, queue_offset={}, msg_id={:?}, tags={tags}, \
             body=<{} bytes>)",
            m.topic,
            m.queue_id,
            m.queue_offset,
            m.msg_id(),
            m.body.len()
        )
    }
}

// A literal default shows in help() and in the stub; keep it equal to the Rust one.
const _: () = assert!(msg::DEFAULT_MAX_INFLATED == 67108864);

/// Decodes the stored messages of a pull, pop or check-transaction body.
#[pyfunction]
#[pyo3(signature = (body, max_inflated=67108864))]
fn decode_messages(
    py: Python<'_>,
    body: &[u8],
    max_inflated: usize,
) -> PyResult<Vec<PyMessageExt>> {
    match py.detach(|| msg::decode_messages_with_limit(body, max_inflated)) {
        Ok(v) => Ok(v.into_iter().map(|inner| PyMessageExt { inner }).collect()),
        Err(e) => Err(message_err(py, &e)),
    }
}

fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for item in a {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(o) => extra_into(py, PyDict::new(py), o)?.into_any(),
    })
}

fn extra_into<'py>(
    py: Python<'py>,
    d: Bound<'py, PyDict>,
    extra: &Map<String, Value>,
) -> PyResult<Bound<'py, PyDict>> {
    for (k, v) in extra {
        d.set_item(k, json_to_py(py, v)?)?;
    }
    Ok(d)
}

fn addrs_dict<'py>(py: Python<'py>, bd: &BrokerData) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (id, addr) in &bd.broker_addrs {
        d.set_item(id, addr)?;
    }
    Ok(d)
}

fn broker_dict<'py>(py: Python<'py>, bd: &BrokerData) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("brokerAddrs", addrs_dict(py, bd)?)?;
    d.set_item("brokerName", &bd.broker_name)?;
    d.set_item("cluster", &bd.cluster)?;
    d.set_item("enableActingMaster", bd.enable_acting_master)?;
    if let Some(z) = &bd.zone_name {
        d.set_item("zoneName", z)?;
    }
    extra_into(py, d, &bd.extra)
}

fn queue_dict<'py>(py: Python<'py>, q: &QueueData) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("brokerName", &q.broker_name)?;
    d.set_item("perm", q.perm)?;
    d.set_item("readQueueNums", q.read_queue_nums)?;
    d.set_item("topicSysFlag", q.topic_sys_flag)?;
    d.set_item("writeQueueNums", q.write_queue_nums)?;
    extra_into(py, d, &q.extra)
}

/// JSON text from bytes, bytearray or str.
fn json_arg(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    bytes_arg("data", v)
}

type Replacements = HashMap<(String, i64, String), String>;

/// Asks `mapping` (a dict old → new, or a callable(name, id, addr) → str | None) for every
/// address, before any lock is taken, so Python code may freely touch the object meanwhile.
fn replacements(
    addrs: Vec<(String, i64, String)>,
    mapping: &Bound<'_, PyAny>,
) -> PyResult<Replacements> {
    let dict = mapping.cast::<PyDict>().ok();
    if dict.is_none() && !mapping.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "mapping: expected a dict of old to new address or a callable(broker_name, \
             broker_id, addr), got {}",
            type_name(mapping)
        )));
    }
    let mut out = HashMap::new();
    for (name, id, addr) in addrs {
        let new = match dict {
            Some(d) => d.get_item(&addr)?,
            None => Some(mapping.call1((&name, id, &addr))?),
        };
        let Some(new) = new.filter(|n| !n.is_none()) else {
            continue;
        };
        let new: String = new.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "mapping for {addr:?}: expected a str or None, got {}",
                type_name(&new)
            ))
        })?;
        out.insert((name, id, addr), new);
    }
    Ok(out)
}

fn apply(r: &Replacements) -> impl FnMut(&str, i64, &str) -> Option<String> + '_ {
    |name, id, addr| r.get(&(name.to_owned(), id, addr.to_owned())).cloned()
}

fn collect_addrs<'a>(brokers: impl Iterator<Item = &'a BrokerData>) -> Vec<(String, i64, String)> {
    brokers
        .flat_map(|bd| {
            bd.broker_addrs
                .iter()
                .map(|(id, a)| (bd.broker_name.clone(), *id, a.clone()))
        })
        .collect()
}

fn broker_addrs_dict<'a, 'py>(
    py: Python<'py>,
    brokers: impl Iterator<Item = &'a BrokerData>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for bd in brokers {
        d.set_item(&bd.broker_name, addrs_dict(py, bd)?)?;
    }
    Ok(d)
}

/// A Python class over a route body (`route::TopicRouteData` or `route::ClusterInfo`): the
/// methods both share (JSON in and out, broker addresses, rewriting, equality) plus `$extra`.
macro_rules! route_body_class {
    (
        $(#[$doc:meta])*
        $py_ty:ident($name:literal, $inner:ty),
        brokers = |$r:ident| $brokers:expr,
        { $($extra:tt)* }
    ) => {
        $(#[$doc])*
        #[pyclass(frozen, module = "rmqfast._core", name = $name)]
        pub struct $py_ty {
            inner: Mutex<$inner>,
        }

        #[pymethods]
        impl $py_ty {
            /// Parses standard JSON or fastjson's bare-integer-key variant.
            #[staticmethod]
            fn from_json(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
                let text = json_arg(data)?;
                match py.detach(|| <$inner>::from_json(&text)) {
                    Ok(v) => Ok($py_ty { inner: Mutex::new(v) }),
                    Err(e) => Err(route_err(py, &e)),
                }
            }

            /// Standard JSON with quoted integer keys.
            fn to_json<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &lock(&self.inner).to_json())
            }

            /// {brokerName: {brokerId: "ip:port"}}.
            fn broker_addrs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let $r = lock(&self.inner);
                broker_addrs_dict(py, $brokers)
            }

            /// Replaces broker addresses in place, from a dict old → new or a callable
            /// (broker_name, broker_id, addr) → new address or None to keep it.
            fn rewrite_broker_addrs(&self, mapping: &Bound<'_, PyAny>) -> PyResult<()> {
                let addrs = {
                    let $r = lock(&self.inner);
                    collect_addrs($brokers)
                };
                let r = replacements(addrs, mapping)?;
                lock(&self.inner).rewrite_broker_addrs(&mut apply(&r));
                Ok(())
            }

            fn __eq__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> bool {
                let Ok(other) = other.cast::<$py_ty>() else {
                    return false;
                };
                if slf.is(other) {
                    return true;
                }
                let a = lock(&slf.get().inner).clone();
                let b = lock(&other.get().inner);
                a == *b
            }

            $($extra)*
        }
    };
}

route_body_class! {
    /// The route of one topic (the GET_ROUTEINFO_BY_TOPIC body); unknown fields survive a
    /// rewrite.
    PyTopicRouteData("TopicRouteData", route::TopicRouteData),
    brokers = |r| r.broker_datas.iter(),
    {
        /// queueDatas as dicts with the JSON field names.
        #[getter]
        fn queue_datas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
            let r = lock(&self.inner);
            let list = PyList::empty(py);
            for q in &r.queue_datas {
                list.append(queue_dict(py, q)?)?;
            }
            Ok(list)
        }

        /// brokerDatas as dicts with the JSON field names; brokerAddrs has int keys.
        #[getter]
        fn broker_datas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
            let r = lock(&self.inner);
            let list = PyList::empty(py);
            for bd in &r.broker_datas {
                list.append(broker_dict(py, bd)?)?;
            }
            Ok(list)
        }

        /// orderTopicConf, if present.
        #[getter]
        fn order_topic_conf(&self) -> Option<String> {
            lock(&self.inner).order_topic_conf.clone()
        }

        fn __repr__(&self) -> String {
            let r = lock(&self.inner);
            let names: Vec<&str> = r
                .broker_datas
                .iter()
                .map(|b| b.broker_name.as_str())
                .collect();
            format!(
                "TopicRouteData(brokers={names:?}, queue_datas={})",
                r.queue_datas.len()
            )
        }
    }
}

route_body_class! {
    /// Brokers and clusters (the GET_BROKER_CLUSTER_INFO body); unknown fields survive a
    /// rewrite.
    PyClusterInfo("ClusterInfo", route::ClusterInfo),
    brokers = |c| c.broker_addr_table.values(),
    {
        /// brokerAddrTable: {brokerName: broker dict}, brokerAddrs with int keys.
        #[getter]
        fn broker_addr_table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            let c = lock(&self.inner);
            let d = PyDict::new(py);
            for (name, bd) in &c.broker_addr_table {
                d.set_item(name, broker_dict(py, bd)?)?;
            }
            Ok(d)
        }

        /// clusterAddrTable: {cluster: [brokerName, ...]}.
        #[getter]
        fn cluster_addr_table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            let c = lock(&self.inner);
            let d = PyDict::new(py);
            for (cluster, names) in &c.cluster_addr_table {
                d.set_item(cluster, PyList::new(py, names)?)?;
            }
            Ok(d)
        }

        fn __repr__(&self) -> String {
            let c = lock(&self.inner);
            format!(
                "ClusterInfo(clusters={:?}, brokers={:?})",
                c.cluster_addr_table.keys().collect::<Vec<_>>(),
                c.broker_addr_table.keys().collect::<Vec<_>>()
            )
        }
    }
}

/// RocketMQ's request codes as (name, code), sorted by code.
#[pyfunction]
fn request_codes() -> Vec<(&'static str, i32)> {
    REQUEST_CODES.to_vec()
}

/// RocketMQ's response codes as (name, code), sorted by code.
#[pyfunction]
fn response_codes() -> Vec<(&'static str, i32)> {
    RESPONSE_CODES.to_vec()
}

/// Adds this file's classes, functions and exceptions to `rmqfast._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MessageError", py.get_type::<MessageError>())?;
    m.add("RouteError", py.get_type::<RouteError>())?;
    m.add("DEFAULT_MAX_INFLATED", msg::DEFAULT_MAX_INFLATED)?;
    m.add_class::<PyBatchMessage>()?;
    m.add_class::<PyMessageExt>()?;
    m.add_class::<PyTopicRouteData>()?;
    m.add_class::<PyClusterInfo>()?;
    m.add_function(wrap_pyfunction!(encode_properties, m)?)?;
    m.add_function(wrap_pyfunction!(decode_properties, m)?)?;
    m.add_function(wrap_pyfunction!(encode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(decode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(decode_messages, m)?)?;
    m.add_function(wrap_pyfunction!(request_codes, m)?)?;
    m.add_function(wrap_pyfunction!(response_codes, m)?)?;
    Ok(())
}
