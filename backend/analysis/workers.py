"""Where samples run, and the scheduler that hands them out.

A *slot* runs lists of samples for one :class:`~backend.analysis.runner.RunnerSpec`:

- :class:`ThreadSlot`: in the driver process (``workers=0``);
- :class:`ProcessSlot`: a local worker process (forkserver, else spawn: safe with torch and
  numba threads), by default one per core for simulation and one per device;
- :class:`RayTaskSlot`: Ray tasks of a few samples each (simulation shards), one slot per CPU
  of the cluster; :class:`RayActorSlot`: one Ray actor per device URL that keeps its device
  open and flashed, placed by Ray resources (``(url, {"devkit-a": 1})``).

:func:`schedule` drives every slot from its own driver thread: a slot takes the next samples,
runs them and hands back records. A slot that is lost (:class:`backend.errors.WorkerLost`: its
process died, its device failed) is retired and its samples go back to the others; a sample
lost ``max_attempts`` times is recorded as failed with the last error, never dropped.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from collections import Counter, deque
from dataclasses import replace
from typing import Callable, Iterator, Optional, Sequence, Union

from backend.analysis.runner import RunnerSpec, SampleRunner, blank_record
from backend.errors import EvaluationError, WorkerLost
from snnlib.errors import MissingDependency, SpikeflashError

#: samples per Ray task: enough to hide the task overhead (about 1 ms), few enough to balance
RAY_SHARD = 8
#: a device given with the Ray resources its actor needs, e.g. ("samna://speck2fdevkit:0", {"lab-a": 1})
DeviceTarget = Union[str, tuple[str, dict]]


class ThreadSlot:
    """Runs samples in the driver process."""

    shard_size = 1

    def __init__(self, spec: RunnerSpec, name: str):
        self.spec, self.name, self.runner = spec, name, None

    def start(self) -> None:
        self.runner = SampleRunner(self.spec)

    def run(self, samples: list) -> list[dict]:
        return self.runner.run_all(samples)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


class ProcessSlot:
    """Runs samples in a local worker process that keeps its runner (and device) between calls."""

    shard_size = 1

    def __init__(self, spec: RunnerSpec, name: str):
        self.spec, self.name, self.process, self.conn = spec, name, None, None

    def start(self) -> None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            # the server imports torch, numba and the engine once; each worker forks from it
            context.set_forkserver_preload(["__main__", "backend.analysis.runner", "mapper", "snnlib"])
        else:
            context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.spec), name=self.name, daemon=True)
        self.process.start()
        child.close()
        kind, payload = self._receive()
        if kind != "ready":
            raise WorkerLost(payload)

    def run(self, samples: list) -> list[dict]:
        try:
            self.conn.send(samples)
        except OSError:
            raise self._ended() from None
        kind, payload = self._receive()
        if kind == "lost":
            raise WorkerLost(payload)
        return payload

    def _receive(self) -> tuple[str, object]:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise self._ended() from None

    def _ended(self) -> WorkerLost:
        self.process.join(5)
        return WorkerLost(f"{self.name} (pid {self.process.pid}) ended with exit code {self.process.exitcode}")

    def close(self) -> None:
        if self.process is None:
            return
        try:
            self.conn.send(None)  # asks the worker to close its device and exit
        except OSError:
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _serve(conn, spec: RunnerSpec) -> None:
    """A worker process: build the runner, then run each list of samples the driver sends
    until it sends None or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        runner = SampleRunner(spec)
    except SpikeflashError as exc:
        conn.send(("lost", str(exc)))
        return
    try:
        conn.send(("ready", None))
        while (samples := conn.recv()) is not None:
            try:
                conn.send(("ok", runner.run_all(samples)))
            except WorkerLost as exc:
                conn.send(("lost", str(exc)))
                return
    except (EOFError, OSError):
        return  # the driver is gone
    finally:
        runner.close()


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency("Ray is not installed; evaluating on Ray needs it",
                                hint="pip install 'spikeflash[ray]'") from exc
    return ray


def connect_ray(address: str):
    """The ``ray`` module, connected: to the running cluster at ``address`` ("auto" finds it),
    or a new local one for "local"; an existing connection is kept."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EvaluationError(f"ray={address!r}: cannot connect ({exc})",
                                  hint="start the cluster with `ray start --head`, pass its address, "
                                  "or pass 'local' for a Ray instance on this machine") from exc
    return ray


#: per Ray worker process: the runner of the spec it ran last (a task reuses it)
_RUNNERS: dict[RunnerSpec, SampleRunner] = {}


def _run_shard(spec: RunnerSpec, samples: list) -> list[dict]:
    """A Ray task: run ``samples`` with the (cached) runner of ``spec``."""
    if spec not in _RUNNERS:
        for old in _RUNNERS.values():
            old.close()
        _RUNNERS.clear()
        _RUNNERS[spec] = SampleRunner(spec)
    return _RUNNERS[spec].run_all(samples)


class RayTaskSlot:
    """Runs shards of samples as Ray tasks (one CPU each); Ray places them on the cluster."""

    shard_size = RAY_SHARD

    def __init__(self, spec: RunnerSpec, name: str):
        self.spec, self.name = spec, name

    def start(self) -> None:
        self.ray = _ray()
        self.task = self.ray.remote(num_cpus=1, max_retries=0)(_run_shard)

    def run(self, samples: list) -> list[dict]:
        try:
            return self.ray.get(self.task.remote(self.spec, samples))
        except self.ray.exceptions.RayError as exc:
            raise WorkerLost(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        pass


class RayActorSlot:
    """One Ray actor for one device: it opens and flashes the device once and runs samples
    until the evaluation ends. ``resources``: the Ray resources that pin it to the device's host."""

    shard_size = 1

    def __init__(self, spec: RunnerSpec, name: str, resources: Optional[dict] = None):
        self.spec, self.name, self.resources, self.actor = spec, name, resources or {}, None

    def start(self) -> None:
        self.ray = _ray()
        actor_class = self.ray.remote(SampleRunner).options(num_cpus=0, max_restarts=0,
                                                            resources=self.resources)
        self.actor = actor_class.remote(self.spec)
        self.run([])  # waits for the device to open and flash

    def run(self, samples: list) -> list[dict]:
        try:
            return self.ray.get(self.actor.run_all.remote(samples))
        except self.ray.exceptions.RayError as exc:
            raise WorkerLost(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        if self.actor is not None:
            self.ray.kill(self.actor)
            self.actor = None


def make_slots(spec: RunnerSpec, devices: Sequence[DeviceTarget] = (), workers: Optional[int] = None,
               ray: Optional[str] = None) -> list:
    """The slots for one evaluation: one per device (running ``spec`` on it), else ``workers``
    simulation slots (None: one per core; 0: one in this process) or, with ``ray``, one Ray
    task slot per CPU of the cluster."""
    if devices:
        slots = []
        for target in devices:
            url, resources = (target, None) if isinstance(target, str) else target
            device_spec = replace(spec, device=url)
            if ray is not None:
                connect_ray(ray)
                slots.append(RayActorSlot(device_spec, f"device {url}", resources))
            elif resources:
                raise EvaluationError(f"device {url!r}: Ray resources {resources} given without Ray",
                                      hint="pass ray='auto' (--ray auto) or the URL alone")
            else:
                slots.append((ThreadSlot if workers == 0 else ProcessSlot)(device_spec, f"device {url}"))
        return slots
    if ray is not None:
        cpus = int(connect_ray(ray).cluster_resources().get("CPU", 1))
        return [RayTaskSlot(spec, f"ray task slot {i}") for i in range(max(cpus, 1))]
    if workers == 0:
        return [ThreadSlot(spec, "in-process worker")]
    return [ProcessSlot(spec, f"worker {i}") for i in range(workers or os.cpu_count() or 1)]


class _Work:
    """The samples still to run, shared by the slot threads: the dataset's iterator, samples
    given back by lost slots, and how many are in flight."""

    def __init__(self, samples: Iterator, max_attempts: int):
        self.cond = threading.Condition()
        self.source, self.retry, self.attempts = samples, deque(), Counter()
        self.in_flight, self.exhausted, self.stopped = 0, False, False
        self.max_attempts = max_attempts

    def take(self, n: int) -> Optional[list]:
        """Up to ``n`` samples; None when none are left (waits while others are in flight,
        since a lost slot may give some back)."""
        with self.cond:
            while not self.stopped:
                batch = [self.retry.popleft() for _ in range(min(n, len(self.retry)))]
                while not self.exhausted and len(batch) < n:
                    sample = next(self.source, None)
                    self.exhausted = sample is None
                    batch += [] if sample is None else [sample]
                if batch:
                    self.in_flight += len(batch)
                    return batch
                if not self.in_flight:
                    return None
                self.cond.wait()
            return None

    def finished(self, batch: list) -> None:
        with self.cond:
            self.in_flight -= len(batch)
            self.cond.notify_all()

    def give_back(self, batch: list, error: str) -> list[dict]:
        """Return a lost slot's samples to the others; those lost ``max_attempts`` times come
        back as failed records."""
        failed = []
        with self.cond:
            for sample in batch:
                self.attempts[sample.index] += 1
                if self.attempts[sample.index] < self.max_attempts:
                    self.retry.append(sample)
                else:
                    failed.append(blank_record(sample, f"lost {self.max_attempts} times, last: {error}"))
            self.in_flight -= len(batch)
            self.cond.notify_all()
        return failed

    def left(self) -> bool:
        with self.cond:
            return bool(self.retry) or not self.exhausted

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


def schedule(samples: Iterator, slots: list, on_record: Callable[[dict], None],
             max_attempts: int = 3) -> list[str]:
    """Run every sample of ``samples`` on ``slots`` (each driven by its own thread) and call
    ``on_record`` in this thread for each result record, in arrival order. Returns one message
    per slot that was lost. Raises EvaluationError when every slot is lost with samples left;
    on an error or Ctrl-C here, stops the slots and re-raises."""
    work, messages, lost = _Work(iter(samples), max_attempts), queue.Queue(), []
    threads = [threading.Thread(target=_drive, args=(slot, work, messages), daemon=True,
                                name=f"spikeflash {slot.name}") for slot in slots]
    for thread in threads:
        thread.start()
    running, fatal = len(threads), None
    try:
        while running:
            kind, payload = messages.get()
            if kind == "records":
                for record in payload:
                    on_record(record)
            elif kind == "lost":
                lost.append(payload)
            elif kind == "fatal":
                fatal = fatal or payload
                work.stop()
            else:
                running -= 1
    except BaseException:
        work.stop()
        for slot in slots:
            slot.close()
        raise
    if fatal is not None:
        raise fatal
    if work.left():
        raise EvaluationError(f"every worker was lost and samples are left: {'; '.join(lost)}",
                              hint="the results file keeps the samples done; fix the workers or "
                              "devices and rerun with resume=True (--resume)")
    return lost


def _drive(slot, work: _Work, messages: queue.Queue) -> None:
    """A slot's thread: start it, run batches until none are left or the slot is lost."""
    try:
        slot.start()
        while (batch := work.take(slot.shard_size)) is not None:
            try:
                records = slot.run(batch)
            except WorkerLost as exc:
                messages.put(("records", work.give_back(batch, str(exc))))
                raise
            work.finished(batch)
            messages.put(("records", records))
    except WorkerLost as exc:
        messages.put(("lost", f"{slot.name}: {exc}"))
    except BaseException as exc:  # a bug or the dataset's iterator failed: stop the run with it
        messages.put(("fatal", exc))
    finally:
        try:
            slot.close()
        finally:
            messages.put(("exit", slot.name))
