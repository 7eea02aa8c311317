// Apache Curator's recipes under the same measurements as bench/zookeeper.ts; compiled and run by it.
// Every timed line is "samples MS MS ..." (System.nanoTime: CLOCK_MONOTONIC, like process.hrtime in Node).
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.RetryOneTime;

public class CuratorBench {
  static CuratorFramework client(String hosts, int sessionMs) throws InterruptedException {
    CuratorFramework c = CuratorFrameworkFactory.builder().connectString(hosts).sessionTimeoutMs(sessionMs)
        .connectionTimeoutMs(10_000).retryPolicy(new RetryOneTime(100)).build();
    c.start();
    if (!c.blockUntilConnected(20, TimeUnit.SECONDS)) throw new IllegalStateException("no connection");
    return c;
  }

  static void print(List<Double> samples) {
    StringBuilder line = new StringBuilder("samples");
    for (double s : samples) line.append(' ').append(s);
    System.out.println(line);
    System.out.flush();
  }

  static double since(long t0) {
    return (System.nanoTime() - t0) / 1e6;
  }

  public static void main(String[] args) throws Exception {
    String mode = args[0], hosts = args[1], path = args[2];
    int count = Integer.parseInt(args[3]);
    List<Double> samples = new ArrayList<>();
    switch (mode) {
      case "mutex": {
        // uncontended acquire + release of one InterProcessMutex, after a warm-up
        CuratorFramework c = client(hosts, 10_000);
        InterProcessMutex mutex = new InterProcessMutex(c, path);
        for (int i = 0; i < 50 + count; i++) {
          long t0 = System.nanoTime();
          mutex.acquire();
          mutex.release();
          if (i >= 50) samples.add(since(t0));
        }
        print(samples);
        c.close();
        break;
      }
      case "latch": {
        // uncontended LeaderLatch: start, hold leadership, close
        CuratorFramework c = client(hosts, 10_000);
        for (int i = 0; i < 20 + count; i++) {
          long t0 = System.nanoTime();
          LeaderLatch latch = new LeaderLatch(c, path);
          latch.start();
          latch.await();
          latch.close();
          if (i >= 20) samples.add(since(t0));
        }
        print(samples);
        c.close();
        break;
      }
      case "handoff": {
        // holder's release -> a waiter on another connection holds the mutex
        CuratorFramework a = client(hosts, 10_000), b = client(hosts, 10_000);
        InterProcessMutex holder = new InterProcessMutex(a, path), waiter = new InterProcessMutex(b, path);
        // A mutex is owned by a thread: the waiter acquires and releases on one of its own.
        ExecutorService waiterThread = Executors.newSingleThreadExecutor();
        for (int i = 0; i < 10 + count; i++) {
          holder.acquire();
          Future<Long> held = waiterThread.submit(() -> {
            waiter.acquire();
            return System.nanoTime();
          });
          // queued: its node is in line behind the holder's
          while (a.getChildren().forPath(path).size() < 2) Thread.sleep(1);
          long t0 = System.nanoTime();
          holder.release();
          long t1 = held.get();
          if (i >= 10) samples.add((t1 - t0) / 1e6);
          waiterThread.submit(() -> {
            waiter.release();
            return null;
          }).get();
        }
        waiterThread.shutdown();
        print(samples);
        a.close();
        b.close();
        break;
      }
      case "lead": {
        // leads with the given session timeout, says so, and waits to be killed
        CuratorFramework c = client(hosts, count);
        LeaderLatch latch = new LeaderLatch(c, path);
        latch.start();
        latch.await();
        System.out.println("leading");
        System.out.flush();
        Thread.sleep(Long.MAX_VALUE);
        break;
      }
      case "follow": {
        // queues behind the leader, says so, and prints when it leads (nanoTime)
        CuratorFramework c = client(hosts, count);
        LeaderLatch latch = new LeaderLatch(c, path);
        latch.start();
        while (latch.getParticipants().size() < 2) Thread.sleep(5);
        System.out.println("queued");
        System.out.flush();
        latch.await();
        System.out.println("led " + System.nanoTime());
        System.out.flush();
        latch.close();
        c.close();
        break;
      }
      default:
        throw new IllegalArgumentException(mode);
    }
    System.exit(0);
  }
}
