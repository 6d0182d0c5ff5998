import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * Sends through a name server (the proxy) with DefaultMQProducer.
 *
 * <p>Arguments (key=value): namesrv, topic, group, prefix (message keys start with it),
 * access_key and secret_key (optional: requests are signed for RocketMQ ACL), and any of
 * sync=N, async=N, oneway=N, batch=BxK (B batches of K messages), queue=N with queue_broker and
 * queue_id (N sends to that one queue). They run in this order and each message's key is
 * {@code <prefix>-<mode>-<i>}. Prints {@code RESULT {...}}: the keys sent per mode, send results
 * per broker, and how many requests of each kind were made.
 *
 * <p>loop=1 instead sends one sync message every interval_ms until standard input closes,
 * printing {@code SENT {"i":..,"ok":..,"broker":..}} per send; RESULT then has the totals.
 */
public final class Producer {
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = Common.args(argv);
        String topic = Common.need(a, "topic");
        String prefix = a.getOrDefault("prefix", "m");
        // access_key/secret_key: sign every request (RocketMQ ACL), as AclClientRPCHook does.
        DefaultMQProducer p = a.containsKey("access_key")
            ? new DefaultMQProducer(Common.need(a, "group"), new AclClientRPCHook(
                new SessionCredentials(Common.need(a, "access_key"), Common.need(a, "secret_key"))))
            : new DefaultMQProducer(Common.need(a, "group"));
        p.setNamesrvAddr(Common.need(a, "namesrv"));
        p.setInstanceName("producer-" + prefix + "-" + System.nanoTime());
        p.setPollNameServerInterval(Common.intArg(a, "poll_ms", 1000));
        p.setHeartbeatBrokerInterval(Common.intArg(a, "heartbeat_ms", 30000));
        p.setSendMsgTimeout(Common.intArg(a, "timeout_ms", 5000));
        p.setRetryTimesWhenSendFailed(2);
        p.setRetryTimesWhenSendAsyncFailed(2);
        p.start();
        int status = 0;
        try {
            Map<String, Object> result = a.containsKey("loop") ? loop(p, topic, prefix, a) : modes(p, topic, prefix, a);
            Common.emit("RESULT", result);
        } catch (Throwable e) {
            Common.fail("producer failed", e);
            status = 1;
        } finally {
            p.shutdown();
        }
        System.exit(status);
    }

    private static Message msg(String topic, String key, String tag) {
        Message m = new Message(topic, tag, key, ("body of " + key).getBytes(StandardCharsets.UTF_8));
        return m;
    }

    private static void count(Map<String, Integer> brokers, SendResult r) {
        brokers.merge(r.getMessageQueue().getBrokerName(), 1, Integer::sum);
    }

    private static void check(SendResult r, String what) {
        if (r.getSendStatus() != SendStatus.SEND_OK) {
            throw new IllegalStateException(what + ": " + r);
        }
    }

    private static Map<String, Object> modes(DefaultMQProducer p, String topic, String prefix,
        Map<String, String> a) throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();
        Map<String, List<String>> keys = new LinkedHashMap<>();
        Map<String, Integer> brokers = new TreeMap<>();
        Map<String, Integer> requests = new TreeMap<>();

        int n = Common.intArg(a, "sync", 0);
        List<String> k = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String key = prefix + "-sync-" + i;
            SendResult r = p.send(msg(topic, key, "sync"));
            check(r, key);
            count(brokers, r);
            k.add(key);
        }
        keys.put("sync", k);
        requests.put("send_v2_sync", n);

        n = Common.intArg(a, "async", 0);
        List<String> ak = new ArrayList<>();
        ConcurrentLinkedQueue<String> errors = new ConcurrentLinkedQueue<>();
        ConcurrentLinkedQueue<SendResult> results = new ConcurrentLinkedQueue<>();
        CountDownLatch done = new CountDownLatch(n);
        for (int i = 0; i < n; i++) {
            final String key = prefix + "-async-" + i;
            ak.add(key);
            p.send(msg(topic, key, "async"), new SendCallback() {
                @Override
                public void onSuccess(SendResult r) {
                    if (r.getSendStatus() != SendStatus.SEND_OK) {
                        errors.add(key + ": " + r);
                    }
                    results.add(r);
                    done.countDown();
                }

                @Override
                public void onException(Throwable e) {
                    errors.add(key + ": " + e);
                    done.countDown();
                }
            });
        }
        if (!done.await(60, TimeUnit.SECONDS)) {
            throw new IllegalStateException("async sends did not complete: " + done.getCount() + " left");
        }
        if (!errors.isEmpty()) {
            throw new IllegalStateException("async sends failed: " + errors);
        }
        for (SendResult r : results) {
            count(brokers, r);
        }
        keys.put("async", ak);
        requests.put("send_v2_async", n);

        n = Common.intArg(a, "oneway", 0);
        List<String> ok = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String key = prefix + "-oneway-" + i;
            p.sendOneway(msg(topic, key, "oneway"));
            ok.add(key);
        }
        keys.put("oneway", ok);
        requests.put("send_v2_oneway", n);

        String batch = a.get("batch");
        List<String> bk = new ArrayList<>();
        int batches = 0;
        if (batch != null) {
            String[] parts = batch.split("x");
            int b = Integer.parseInt(parts[0]);
            int size = Integer.parseInt(parts[1]);
            for (int j = 0; j < b; j++) {
                List<Message> list = new ArrayList<>();
                for (int i = 0; i < size; i++) {
                    String key = prefix + "-batch-" + j + "-" + i;
                    list.add(msg(topic, key, "batch"));
                    bk.add(key);
                }
                SendResult r = p.send(list);
                check(r, "batch " + j);
                brokers.merge(r.getMessageQueue().getBrokerName(), size, Integer::sum);
                batches++;
            }
        }
        keys.put("batch", bk);
        requests.put("send_batch", batches);

        n = Common.intArg(a, "queue", 0);
        List<String> qk = new ArrayList<>();
        if (n > 0) {
            String qb = Common.need(a, "queue_broker");
            int qid = Integer.parseInt(Common.need(a, "queue_id"));
            MessageQueue chosen = null;
            for (MessageQueue mq : p.fetchPublishMessageQueues(topic)) {
                if (mq.getBrokerName().equals(qb) && mq.getQueueId() == qid) {
                    chosen = mq;
                }
            }
            if (chosen == null) {
                throw new IllegalStateException("no queue " + qb + "/" + qid + " in " + p.fetchPublishMessageQueues(topic));
            }
            for (int i = 0; i < n; i++) {
                String key = prefix + "-queue-" + i;
                SendResult r = p.send(msg(topic, key, "queue"), chosen);
                check(r, key);
                if (!r.getMessageQueue().equals(chosen)) {
                    throw new IllegalStateException(key + " went to " + r.getMessageQueue() + ", not " + chosen);
                }
                count(brokers, r);
                qk.add(key);
            }
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("broker", chosen.getBrokerName());
            q.put("queue_id", chosen.getQueueId());
            out.put("queue", q);
        }
        keys.put("queue", qk);
        requests.put("send_v2_queue", n);

        out.put("keys", keys);
        out.put("brokers", brokers);
        out.put("requests", requests);
        return out;
    }

    private static Map<String, Object> loop(DefaultMQProducer p, String topic, String prefix,
        Map<String, String> a) throws Exception {
        int interval = Common.intArg(a, "interval_ms", 50);
        int max = Common.intArg(a, "max", 100000);
        AtomicBoolean stop = new AtomicBoolean(false);
        Thread watch = new Thread(() -> {
            try {
                Common.awaitStdinClosed(Long.MAX_VALUE / 4);
            } catch (InterruptedException ignored) {
                // stop anyway
            }
            stop.set(true);
        }, "stop-watch");
        watch.setDaemon(true);
        watch.start();
        int sent = 0;
        int failed = 0;
        Map<String, Integer> brokers = new TreeMap<>();
        List<String> errors = new ArrayList<>();
        for (int i = 0; i < max && !stop.get(); i++) {
            String key = prefix + "-loop-" + i;
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("i", i);
            try {
                SendResult r = p.send(msg(topic, key, "loop"));
                boolean good = r.getSendStatus() == SendStatus.SEND_OK;
                line.put("ok", good);
                line.put("broker", r.getMessageQueue().getBrokerName());
                if (good) {
                    sent++;
                    count(brokers, r);
                } else {
                    failed++;
                    errors.add(key + ": " + r.getSendStatus());
                }
            } catch (Exception e) {
                failed++;
                line.put("ok", false);
                line.put("error", e.toString());
                errors.add(key + ": " + e);
            }
            Common.emit("SENT", line);
            Thread.sleep(interval);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("sent", sent);
        out.put("failed", failed);
        out.put("brokers", brokers);
        out.put("errors", errors.size() > 20 ? errors.subList(0, 20) : errors);
        return out;
    }
}
