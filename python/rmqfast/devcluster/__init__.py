"""A local RocketMQ (name servers, brokers, Proxy) started from Maven Central jars.

Shell: `python -m rmqfast.devcluster up [--namesrvs N] [--brokers M] [--proxy] [--dir DIR]`,
then `status`, `stop-broker NAME`, `start-broker NAME`, `mqadmin ARGS...` and `down`.
`run` (what `make run` calls; `devcluster.run`) adds the rmqfast proxy and a first message;
`produce` and `consume` (`devcluster.messages`) go through that proxy.

Python::

    with DevCluster(namesrvs=1, brokers=2, proxy=True) as c:
        c.namesrv_addr, c.brokers, c.proxy_addr

The jars come from `pom.xml` next to this file (`ensure_jars`), cached under $RMQFAST_CACHE or
~/.cache/rmqfast. Every server runs on 127.0.0.1 with free ports; configs, stores and logs
(`logs/<name>.log` from logback, `logs/<name>.out` for stdout/stderr) live under the cluster DIR.
"""

from __future__ import annotations

from .cluster import (
    BROKER_HEAP,
    BROKER_MAIN,
    CLUSTER_NAME,
    NAMESRV_HEAP,
    NAMESRV_MAIN,
    PROXY_HEAP,
    PROXY_MAIN,
    STATE_FILE,
    DevCluster,
)
from .errors import DevClusterError
from .jars import (
    JDK17_FLAGS,
    LOGBACK_XML,
    MQADMIN_HEAP,
    MQADMIN_MAIN,
    POM,
    ROCKETMQ_VERSION,
    cache_root,
    ensure_jars,
    find_java,
    find_mvn,
    java_classpath,
    java_command,
    run_mqadmin,
)
from .processes import _port_free as _port_free
from .processes import current_dir
from .remoting import LOOPBACK, RemotingClient, query_cluster_info, registered_brokers

__all__ = [
    "BROKER_HEAP",
    "BROKER_MAIN",
    "CLUSTER_NAME",
    "JDK17_FLAGS",
    "LOGBACK_XML",
    "LOOPBACK",
    "MQADMIN_HEAP",
    "MQADMIN_MAIN",
    "NAMESRV_HEAP",
    "NAMESRV_MAIN",
    "POM",
    "PROXY_HEAP",
    "PROXY_MAIN",
    "ROCKETMQ_VERSION",
    "STATE_FILE",
    "DevCluster",
    "DevClusterError",
    "RemotingClient",
    "cache_root",
    "current_dir",
    "ensure_jars",
    "find_java",
    "find_mvn",
    "java_classpath",
    "java_command",
    "query_cluster_info",
    "registered_brokers",
    "run_mqadmin",
]
