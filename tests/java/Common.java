import com.alibaba.fastjson.JSON;
import java.io.IOException;
import java.io.InputStream;
import java.util.HashMap;
import java.util.Map;

/**
 * Helpers shared by the test programs: key=value arguments, machine-readable output lines and
 * waiting for the test to close standard input.
 *
 * <p>Every program prints its findings as {@code RESULT {json}} (and, for the interactive
 * ones, {@code DONE {json}} or {@code SENT {json}} lines along the way). Python parses those
 * lines; everything else on stdout is ignored. A program exits 1 on any failure.
 */
final class Common {
    private Common() {
    }

    /** Parses {@code key=value} arguments. */
    static Map<String, String> args(String[] argv) {
        Map<String, String> out = new HashMap<>();
        for (String a : argv) {
            int eq = a.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected key=value, got " + a);
            }
            out.put(a.substring(0, eq), a.substring(eq + 1));
        }
        return out;
    }

    static String need(Map<String, String> args, String key) {
        String v = args.get(key);
        if (v == null) {
            throw new IllegalArgumentException("missing argument " + key + "=...");
        }
        return v;
    }

    static int intArg(Map<String, String> args, String key, int dflt) {
        String v = args.get(key);
        return v == null ? dflt : Integer.parseInt(v);
    }

    /** Prints one machine-readable line, e.g. {@code RESULT {"sent":3}}. */
    static synchronized void emit(String tag, Object value) {
        System.out.println(tag + " " + JSON.toJSONString(value));
        System.out.flush();
    }

    /** Blocks until standard input reaches EOF (the test's signal to finish) or the timeout. */
    static void awaitStdinClosed(long timeoutMillis) throws InterruptedException {
        Thread t = new Thread(() -> {
            try {
                InputStream in = System.in;
                byte[] buf = new byte[256];
                while (in.read(buf) >= 0) {
                    // the test writes nothing; any input is ignored
                }
            } catch (IOException ignored) {
                // a closed pipe means the same as EOF
            }
        }, "stdin-watch");
        t.setDaemon(true);
        t.start();
        t.join(timeoutMillis);
    }

    /** Exits with status 1 after printing why, so the test sees a failure, never a hang. */
    static void fail(String why, Throwable e) {
        Map<String, Object> m = new HashMap<>();
        m.put("error", why + (e == null ? "" : ": " + e));
        emit("FAILED", m);
        if (e != null) {
            e.printStackTrace();
        }
        System.exit(1);
    }
}
