import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * Transactional messages whose outcome only the broker's check-back can settle.
 *
 * <p>executeLocalTransaction answers UNKNOW, so the producer ends the half message with
 * END_TRANSACTION "not decided"; the broker later sends CHECK_TRANSACTION_STATE over the
 * producer's connection, checkLocalTransaction answers COMMIT_MESSAGE and the client sends a
 * second END_TRANSACTION (fromTransactionCheck) that commits it.
 *
 * <p>Arguments: namesrv, topic, group, prefix, count, timeout_s. Prints {@code DONE {...}} once
 * every message was checked, waits for standard input to close, then prints
 * {@code RESULT {"keys": [...], "executed": n, "checks": n, "checked_keys": [...]}}.
 */
public final class TxProducer {
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = Common.args(argv);
        String topic = Common.need(a, "topic");
        String prefix = a.getOrDefault("prefix", "tx");
        int count = Common.intArg(a, "count", 1);
        int timeout = Common.intArg(a, "timeout_s", 90);
        AtomicInteger executed = new AtomicInteger();
        AtomicInteger checks = new AtomicInteger();
        TreeSet<String> checked = new TreeSet<>();
        CountDownLatch allChecked = new CountDownLatch(count);

        TransactionMQProducer p = new TransactionMQProducer(Common.need(a, "group"));
        p.setNamesrvAddr(Common.need(a, "namesrv"));
        p.setInstanceName("tx-" + prefix + "-" + System.nanoTime());
        p.setPollNameServerInterval(1000);
        p.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                executed.incrementAndGet();
                return LocalTransactionState.UNKNOW;
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                checks.incrementAndGet();
                synchronized (checked) {
                    if (checked.add(msg.getKeys())) {
                        allChecked.countDown();
                    }
                }
                return LocalTransactionState.COMMIT_MESSAGE;
            }
        });
        p.start();
        List<String> keys = new ArrayList<>();
        try {
            for (int i = 0; i < count; i++) {
                String key = prefix + "-tx-" + i;
                Message m = new Message(topic, "tx", key, ("body of " + key).getBytes(StandardCharsets.UTF_8));
                TransactionSendResult r = p.sendMessageInTransaction(m, null);
                if (r.getSendStatus() != SendStatus.SEND_OK || r.getLocalTransactionState() != LocalTransactionState.UNKNOW) {
                    throw new IllegalStateException(key + ": " + r);
                }
                keys.add(key);
            }
        } catch (Exception e) {
            p.shutdown();
            Common.fail("transactional send failed", e);
        }
        if (!allChecked.await(timeout, TimeUnit.SECONDS)) {
            p.shutdown();
            Common.fail("the broker checked " + checked + " of " + keys + " within " + timeout + " s", null);
        }
        Map<String, Object> done = new LinkedHashMap<>();
        done.put("executed", executed.get());
        done.put("checks", checks.get());
        Common.emit("DONE", done);
        Common.awaitStdinClosed(timeout * 1000L);
        p.shutdown();
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("keys", keys);
        out.put("executed", executed.get());
        out.put("checks", checks.get());
        synchronized (checked) {
            out.put("checked_keys", new ArrayList<>(checked));
        }
        Common.emit("RESULT", out);
        System.exit(0);
    }
}
