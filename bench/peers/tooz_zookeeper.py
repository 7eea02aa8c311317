"""Python tooz's ZooKeeper driver (kazoo) under the same measurements as bench/zookeeper.ts; run by it.

  tooz_zookeeper.py uncontended URL NAME COUNT   acquire + release one lock COUNT times, after a warm-up
  tooz_zookeeper.py handoff URL NAME COUNT       holder's release -> a waiter on another coordinator holds it

Prints "samples MS MS ...", timed with time.monotonic_ns().
"""
import sys
import threading
import time

from tooz import coordination

mode, url, name, count = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])


def coordinator(member):
    c = coordination.get_coordinator(url, member)
    c.start()
    return c


def ms(ns):
    return ns / 1e6


samples = []
if mode == "uncontended":
    c = coordinator(b"u")
    lock = c.get_lock(name)
    for i in range(50 + count):
        t0 = time.monotonic_ns()
        lock.acquire()
        lock.release()
        if i >= 50:
            samples.append(ms(time.monotonic_ns() - t0))
    c.stop()
elif mode == "handoff":
    a, b = coordinator(b"a"), coordinator(b"b")
    holder, waiter = a.get_lock(name), b.get_lock(name)
    for i in range(10 + count):
        holder.acquire()
        held = {}

        def wait():
            waiter.acquire(blocking=True)
            held["t"] = time.monotonic_ns()

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.03)  # queued by then; tooz exposes no way to know
        t0 = time.monotonic_ns()
        holder.release()
        t.join()
        if i >= 10:
            samples.append(ms(held["t"] - t0))
        waiter.release()
    a.stop()
    b.stop()
else:
    raise SystemExit("unknown mode " + mode)
print("samples " + " ".join(str(s) for s in samples), flush=True)
