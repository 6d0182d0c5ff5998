import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * A DefaultMQPushConsumer in its classic mode: rebalancing in the client and long-polling
 * PULL_MESSAGE requests (suspended by the broker up to 15 s).
 *
 * <p>Arguments: namesrv, topic, group, expect (distinct keys to wait for), timeout_s. Prints
 * {@code DONE {...}} once every expected key arrived, then waits for standard input to close (so
 * the test can read the proxy's stats while the consumer is still connected) and prints
 * {@code RESULT {"received": {key: [broker, queueId, deliveries]}, "deliveries": n, ...}}.
 * Exits 1 if the expected keys did not all arrive in time.
 */
public final class PushConsumer {
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = Common.args(argv);
        int expect = Common.intArg(a, "expect", 1);
        int timeout = Common.intArg(a, "timeout_s", 120);
        Map<String, Object[]> received = new TreeMap<>();
        AtomicInteger deliveries = new AtomicInteger();
        CountDownLatch all = new CountDownLatch(1);

        DefaultMQPushConsumer c = new DefaultMQPushConsumer(Common.need(a, "group"));
        c.setNamesrvAddr(Common.need(a, "namesrv"));
        c.setInstanceName("push-" + System.nanoTime());
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.setPollNameServerInterval(1000);
        c.subscribe(Common.need(a, "topic"), "*");
        c.registerMessageListener((MessageListenerConcurrently) (List<MessageExt> msgs, org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyContext ctx) -> {
            synchronized (received) {
                for (MessageExt m : msgs) {
                    deliveries.incrementAndGet();
                    Object[] prev = received.get(m.getKeys());
                    int n = prev == null ? 1 : (Integer) prev[2] + 1;
                    received.put(m.getKeys(), new Object[] {ctx.getMessageQueue().getBrokerName(), m.getQueueId(), n});
                }
                if (received.size() >= expect) {
                    all.countDown();
                }
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        c.start();
        boolean ok = all.await(timeout, TimeUnit.SECONDS);
        Map<String, Object> summary = new LinkedHashMap<>();
        synchronized (received) {
            summary.put("distinct", received.size());
            summary.put("deliveries", deliveries.get());
        }
        if (!ok) {
            c.shutdown();
            Common.fail("only " + summary + " of " + expect + " keys arrived in " + timeout + " s", null);
        }
        Common.emit("DONE", summary);
        Common.awaitStdinClosed(timeout * 1000L);
        c.shutdown();
        Map<String, Object> out = new LinkedHashMap<>();
        synchronized (received) {
            out.put("received", received);
            out.put("deliveries", deliveries.get());
        }
        Common.emit("RESULT", out);
        System.exit(0);
    }
}
