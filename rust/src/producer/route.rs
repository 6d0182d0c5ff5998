//! Where a topic's messages can go: the writable queues of a topic route, and Java's
//! round-robin queue selection that avoids the last failed broker on retry.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::codec::route::TopicRouteData;

/// Permission bit: the queues accept writes.
pub const PERM_WRITE: i32 = 0x2;

/// Caps a route borrowed from the default topic (TBW102) for a topic the brokers will create on
/// its first message: each queue data's read and write queue counts become
/// min(`queue_nums`, readQueueNums), as Java's MQClientInstance does with the producer's
/// defaultTopicQueueNums.
pub fn cap_default_topic_queues(route: &mut TopicRouteData, queue_nums: i32) {
    for qd in &mut route.queue_datas {
        let n = queue_nums.min(qd.read_queue_nums);
        qd.read_queue_nums = n;
        qd.write_queue_nums = n;
    }
}

/// A broker group that has a master to send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerTarget {
    pub name: String,
    /// The master's address (brokerId 0).
    pub addr: String,
}

/// One writable message queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRef {
    /// Index into `PublishInfo::brokers`.
    pub broker: usize,
    pub queue_id: i32,
}

/// The queues a producer may write to, in Java's order (queue data sorted by broker name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishInfo {
    pub brokers: Vec<BrokerTarget>,
    pub queues: Vec<QueueRef>,
}

impl PublishInfo {
    /// Writable queues of brokers that have a master (TopicPublishInfo as Java builds it).
    pub fn from_route(route: &TopicRouteData) -> PublishInfo {
        let mut qds: Vec<_> = route.queue_datas.iter().collect();
        qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        let mut info = PublishInfo::default();
        for qd in qds {
            if qd.perm & PERM_WRITE == 0 || qd.write_queue_nums <= 0 {
                continue;
            }
            let master = route
                .broker_datas
                .iter()
                .find(|bd| bd.broker_name == qd.broker_name)
                .and_then(|bd| bd.broker_addrs.get(&0));
            let Some(addr) = master else { continue };
            let broker = match info.brokers.iter().position(|b| b.name == qd.broker_name) {
                Some(i) => i,
                None => {
                    info.brokers.push(BrokerTarget {
                        name: qd.broker_name.clone(),
                        addr: addr.clone(),
                    });
                    info.brokers.len() - 1
                }
            };
            for queue_id in 0..qd.write_queue_nums {
                info.queues.push(QueueRef { broker, queue_id });
            }
        }
        info
    }

    /// Next queue in round-robin order; when `avoid` names a broker, the next queue on any other
    /// broker if there is one (Java's selectOneMessageQueue(lastBrokerName)).
    pub fn select(&self, index: &AtomicUsize, avoid: Option<&str>) -> Option<QueueRef> {
        let n = self.queues.len();
        if n == 0 {
            return None;
        }
        if let Some(avoid) = avoid {
            for _ in 0..n {
                let q = self.queues[index.fetch_add(1, Ordering::Relaxed) % n];
                if self.brokers[q.broker].name != avoid {
                    return Some(q);
                }
            }
        }
        Some(self.queues[index.fetch_add(1, Ordering::Relaxed) % n])
    }

    /// The broker a queue belongs to.
    pub fn broker(&self, q: QueueRef) -> &BrokerTarget {
        &self.brokers[q.broker]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(json: &str) -> TopicRouteData {
        TopicRouteData::from_json(json.as_bytes()).unwrap()
    }

    const TWO_BROKERS: &str = r#"{
        "brokerDatas":[
            {"brokerAddrs":{"0":"127.0.0.1:20911","1":"127.0.0.1:20921"},"brokerName":"broker-b","cluster":"C"},
            {"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"C"},
            {"brokerAddrs":{"1":"127.0.0.1:30921"},"brokerName":"broker-c","cluster":"C"}],
        "queueDatas":[
            {"brokerName":"broker-b","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2},
            {"brokerName":"broker-a","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2},
            {"brokerName":"broker-c","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]
    }"#;

    #[test]
    fn writable_queues_of_masters_sorted_by_broker() {
        let info = PublishInfo::from_route(&route(TWO_BROKERS));
        // broker-c has no master; broker-a sorts first.
        let names: Vec<_> = info.brokers.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["broker-a", "broker-b"]);
        assert_eq!(info.brokers[1].addr, "127.0.0.1:20911");
        let qs: Vec<_> = info
            .queues
            .iter()
            .map(|q| (info.broker(*q).name.as_str(), q.queue_id))
            .collect();
        assert_eq!(
            qs,
            [
                ("broker-a", 0),
                ("broker-a", 1),
                ("broker-b", 0),
                ("broker-b", 1)
            ]
        );
    }

    #[test]
    fn read_only_queues_are_skipped() {
        let json = TWO_BROKERS.replace(
            r#""brokerName":"broker-a","perm":6"#,
            r#""brokerName":"broker-a","perm":4"#,
        );
        let info = PublishInfo::from_route(&route(&json));
        assert!(info
            .queues
            .iter()
            .all(|q| info.broker(*q).name == "broker-b"));
        assert_eq!(info.queues.len(), 2);
    }

    #[test]
    fn round_robin_and_different_broker_on_retry() {
        let info = PublishInfo::from_route(&route(TWO_BROKERS));
        let idx = AtomicUsize::new(0);
        let picks: Vec<_> = (0..6)
            .map(|_| {
                let q = info.select(&idx, None).unwrap();
                (info.broker(q).name.clone(), q.queue_id)
            })
            .collect();
        assert_eq!(
            picks,
            [
                ("broker-a".to_string(), 0),
                ("broker-a".to_string(), 1),
                ("broker-b".to_string(), 0),
                ("broker-b".to_string(), 1),
                ("broker-a".to_string(), 0),
                ("broker-a".to_string(), 1),
            ]
        );
        // Whatever the counter, a retry after broker-a lands on broker-b and vice versa.
        for start in 0..8 {
            let idx = AtomicUsize::new(start);
            let q = info.select(&idx, Some("broker-a")).unwrap();
            assert_eq!(info.broker(q).name, "broker-b");
            let q = info.select(&idx, Some("broker-b")).unwrap();
            assert_eq!(info.broker(q).name, "broker-a");
        }
    }

    #[test]
    fn default_topic_route_is_capped_by_read_queue_nums() {
        // 8/8 becomes 4/4; 2 readable of 8 writable becomes 2/2 (Java takes readQueueNums).
        let json = r#"{"brokerDatas":[
                {"brokerAddrs":{"0":"h:1"},"brokerName":"a"},
                {"brokerAddrs":{"0":"h:2"},"brokerName":"b"}],
            "queueDatas":[
                {"brokerName":"a","perm":7,"readQueueNums":8,"writeQueueNums":8},
                {"brokerName":"b","perm":7,"readQueueNums":2,"writeQueueNums":8}]}"#;
        let mut r = route(json);
        cap_default_topic_queues(&mut r, 4);
        let nums: Vec<_> = r
            .queue_datas
            .iter()
            .map(|q| {
                (
                    q.broker_name.as_str(),
                    q.read_queue_nums,
                    q.write_queue_nums,
                )
            })
            .collect();
        assert_eq!(nums, [("a", 4, 4), ("b", 2, 2)]);
        let info = PublishInfo::from_route(&r);
        assert_eq!(info.queues.len(), 6);
        assert!(info.queues.iter().all(|q| q.queue_id < 4));
    }

    #[test]
    fn single_broker_retry_stays_put_and_empty_route_selects_nothing() {
        let json = r#"{"brokerDatas":[{"brokerAddrs":{"0":"h:1"},"brokerName":"only"}],
            "queueDatas":[{"brokerName":"only","perm":6,"readQueueNums":4,"writeQueueNums":4}]}"#;
        let info = PublishInfo::from_route(&route(json));
        let idx = AtomicUsize::new(usize::MAX); // wraps without panicking
        let q = info.select(&idx, Some("only")).unwrap();
        assert_eq!(info.broker(q).name, "only");
        assert_eq!(PublishInfo::default().select(&idx, None), None);
    }
}
