import java.lang.reflect.Field;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyContext;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.impl.consumer.DefaultMQPushConsumerImpl;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * A DefaultMQPushConsumer in POP mode: the group's consume mode must have been set to POP on the
 * brokers (mqadmin setConsumeMode) and client rebalancing is off, so the client asks the broker
 * for its assignment (QUERY_ASSIGNMENT) and then consumes with POP_MESSAGE, ACK_MESSAGE and
 * CHANGE_MESSAGE_INVISIBLETIME (ConsumeMessagePopConcurrentlyService).
 *
 * <p>The listener answers RECONSUME_LATER the first time it sees a key, so the client sends one
 * CHANGE_MESSAGE_INVISIBLETIME for it; the message comes back once it is visible again and is then
 * acknowledged with CONSUME_SUCCESS (one ACK_MESSAGE). The first retry delay is lowered from the
 * client's fixed 10 s to retry_delay_s (reflection on DefaultMQPushConsumerImpl.popDelayLevel).
 *
 * <p>Arguments: namesrv, topic, group, expect, timeout_s, retry_delay_s. Prints {@code DONE} when
 * every expected key has been acknowledged, waits for standard input to close, then prints
 * {@code RESULT {"later": n, "success": n, "acked": [...], "seen": {key: times}}}.
 */
public final class PopConsumer {
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = Common.args(argv);
        int expect = Common.intArg(a, "expect", 1);
        int timeout = Common.intArg(a, "timeout_s", 120);
        int retryDelay = Common.intArg(a, "retry_delay_s", 1);
        Map<String, Integer> seen = new TreeMap<>();
        Set<String> acked = new HashSet<>();
        AtomicInteger later = new AtomicInteger();
        AtomicInteger success = new AtomicInteger();
        CountDownLatch all = new CountDownLatch(1);

        DefaultMQPushConsumer c = new DefaultMQPushConsumer(Common.need(a, "group"));
        c.setNamesrvAddr(Common.need(a, "namesrv"));
        c.setInstanceName("pop-" + System.nanoTime());
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.setClientRebalance(false);
        c.setPopInvisibleTime(Common.intArg(a, "invisible_ms", 20000));
        c.setPopBatchNums(Common.intArg(a, "pop_batch", 16));
        c.setPollNameServerInterval(1000);
        c.subscribe(Common.need(a, "topic"), "*");
        c.registerMessageListener((MessageListenerConcurrently) (List<MessageExt> msgs, ConsumeConcurrentlyContext ctx) -> {
            synchronized (seen) {
                boolean retryAll = false;
                for (MessageExt m : msgs) {
                    int n = seen.merge(m.getKeys(), 1, Integer::sum);
                    if (n == 1) {
                        retryAll = true;
                    }
                }
                // A batch is acked or retried as a whole; the default batch size is 1.
                if (retryAll) {
                    later.addAndGet(msgs.size());
                    return ConsumeConcurrentlyStatus.RECONSUME_LATER;
                }
                success.addAndGet(msgs.size());
                for (MessageExt m : msgs) {
                    acked.add(m.getKeys());
                }
                if (acked.size() >= expect) {
                    all.countDown();
                }
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            }
        });
        DefaultMQPushConsumerImpl impl = c.getDefaultMQPushConsumerImpl();
        Field f = DefaultMQPushConsumerImpl.class.getDeclaredField("popDelayLevel");
        f.setAccessible(true);
        int[] levels = (int[]) f.get(impl);
        levels[0] = retryDelay;
        c.start();
        boolean ok = all.await(timeout, TimeUnit.SECONDS);
        Map<String, Object> summary = new LinkedHashMap<>();
        synchronized (seen) {
            summary.put("acked", acked.size());
            summary.put("seen", seen.size());
            summary.put("later", later.get());
            summary.put("success", success.get());
        }
        if (!ok) {
            c.shutdown();
            Common.fail("only " + summary + " of " + expect + " keys acked in " + timeout + " s", null);
        }
        Common.emit("DONE", summary);
        Common.awaitStdinClosed(timeout * 1000L);
        c.shutdown();
        Map<String, Object> out = new LinkedHashMap<>();
        synchronized (seen) {
            out.put("later", later.get());
            out.put("success", success.get());
            out.put("acked", new java.util.TreeSet<>(acked));
            out.put("seen", seen);
        }
        Common.emit("RESULT", out);
        System.exit(0);
    }
}
