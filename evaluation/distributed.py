"""Evaluation on a Dask cluster: the same shards as ``--jobs``, run by dask.distributed workers.

Design
------
An evaluation has one expensive step, the heat maps (about a second per image per method on one
core), and a cheap rest: boxes, cross-validation, IoU, CorLoc and the results CSV take seconds
once the maps exist. Only the expensive step is distributed, and through the very function the
local ``--jobs`` processes run:

* The client cuts the dataset into batches at fixed positions (:func:`sensloc.evaluation.maps.batch_ranges`:
  an image is always computed with the same neighbours, because a network's floats can depend
  on the batch), groups the batches the cache lacks into shards (about four per worker) and
  submits one task per shard: :func:`sensloc.evaluation.maps.run_shard` with a
  :class:`~sensloc.evaluation.maps.ShardJob` holding image paths, classes and SHA-256 digests, never
  pixels. The worker reads the photos from their paths, computes the logits and maps the cache
  lacks, and stores them in the shared :class:`~sensloc.evaluation.map_cache.MapCache` (atomic writes).
* Each worker process loads the weight file once, on its first shard, and keeps it: the network
  is cached per process under the file's path and SHA-256, and a worker whose file has another
  SHA-256 than the client's refuses to run rather than mix two networks' maps.
* The client then reads the maps from the cache and runs the rest exactly as a local run does:
  box prediction cross-validates over the whole dataset (folds are drawn over all images), so no
  row is final before every map exists, and keeping that step in one process keeps its numbers
  identical to a local run. Workers use one BLAS / Numba thread, like the local ``--jobs``
  processes, so their maps are the same floats as a local ``--jobs N`` run's.
* Failures. A worker that dies mid-shard leaves complete cache entries or none; the scheduler
  re-runs its shard on another worker (up to ``distributed.scheduler.allowed-failures`` deaths
  per shard, 3 by default), and the re-run computes only what is missing. The results CSV has a
  single writer, the client, appending whole lines after the maps are done: it cannot hold a
  duplicate or a torn row. An exception inside a shard (a corrupt photo) is not retried, because
  it would fail again: the run stops and names the photo.

An existing cluster must reach the same files at the same absolute paths as the client: the
weight file, the photos and the map cache folder (``--cache``), e.g. on a shared file system;
and its workers need ``sensloc`` installed. ``dask[distributed]`` is an optional extra:
``pip install "sensloc[dask]"``.
"""
import logging
from contextlib import contextmanager, nullcontext

from sensloc.evaluation.workers import SINGLE_THREAD_ENV, environment, start_worker

INSTALL_HINT = 'pip install "sensloc[dask]"'


class ClusterError(OSError):
    """The Dask cluster cannot be reached or cannot finish the work (an environment failure,
    like an unreachable file: the command line reports it in one line)."""


def require_distributed():
    """The ``distributed`` module, or an ImportError saying how to install it."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(f"running on Dask needs dask.distributed, which is not installed: "
                          f"{INSTALL_HINT}") from error
    return distributed


@contextmanager
def local_cluster(workers):
    """A client of a temporary ``LocalCluster``: ``workers`` processes, one thread each, single-
    threaded BLAS and Numba (as the local ``--jobs`` processes), no dashboard.

    The workers' own logs are silenced: an error in a task is raised again here, with its
    message, and a worker that dies is replaced and its shard re-run, so the terminal shows only
    the progress bar and, on failure, the one-line error (no worker tracebacks).

    Yields
    ------
    distributed.Client
    """
    distributed = require_distributed()
    import dask
    if workers < 1:
        raise ValueError(f"a local Dask cluster needs at least one worker, got {workers}")
    # The nanny sets these before spawning each worker, including one restarted after a crash;
    # BLAS and Numba read them once, at import. It also sets them in this process: restore.
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **SINGLE_THREAD_ENV}
    with environment(SINGLE_THREAD_ENV), \
            dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=logging.CRITICAL) \
            as cluster, \
            distributed.Client(cluster) as client:
        yield client


def connect(address):
    """A client of a running scheduler: ``tcp://host:8786`` (any Dask address) or the path of
    a scheduler file (``*.json``, as written by ``dask scheduler --scheduler-file``)."""
    distributed = require_distributed()
    import dask
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        if str(address).endswith(".json"):
            return distributed.Client(scheduler_file=str(address))
        return distributed.Client(str(address))
    except (OSError, ValueError, TypeError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address!r} (waited up to {timeout}: "
                           f"{error}); start one with `dask scheduler`, or use --dask local") from error


def map_unordered(client, function, items):
    """Yield ``function(item)`` for every item, each as its task completes on the cluster.

    Tasks of a worker that dies are re-run by the scheduler; a task that killed too many workers
    raises :class:`ClusterError`; an exception raised by ``function`` cancels the rest and is
    re-raised here, as it would be locally.
    """
    distributed = require_distributed()
    # pure=False: a re-run of the same shard (e.g. after an interruption) is a new task, never a
    # stale result the scheduler remembers.
    futures = client.map(function, items, pure=False)
    try:
        for future in distributed.as_completed(futures):
            try:
                yield future.result()
            except distributed.KilledWorker as error:
                raise ClusterError(f"a shard killed {dask_allowed_failures()} Dask workers in turn "
                                   f"(out of memory?), giving up: {error}") from error
    finally:
        client.cancel(futures)


def backend_plugin():
    """A Dask worker plugin that puts its workers on this process's backend
    (:func:`sensloc.evaluation.workers.start_worker`), as the local ``--jobs`` pool does."""
    distributed = require_distributed()
    from sensloc import nets

    class Backend(distributed.WorkerPlugin):
        def __init__(self, backend):
            self.backend = backend

        def setup(self, worker):
            start_worker(self.backend)

    return Backend(nets.current_backend())


def dask_allowed_failures():
    import dask
    return dask.config.get("distributed.scheduler.allowed-failures") + 1


@contextmanager
def dask_executor(target, local_workers=1):
    """The Dask executor of :func:`sensloc.evaluation.maps.ensure_maps`.

    Parameters
    ----------
    target : "local", str or distributed.Client
        "local" starts a temporary ``LocalCluster`` of ``local_workers`` workers (closed on exit);
        a string is a scheduler address or scheduler file to connect to (the cluster stays up);
        a connected client is used as it is.
    local_workers : int

    Yields
    ------
    map_unordered : callable
        ``map_unordered(function, items)`` yields ``function(item)`` as tasks complete.
    workers : int
        Worker threads on the cluster (to size the shards).
    """
    distributed = require_distributed()
    if isinstance(target, distributed.Client):
        clients = nullcontext(target)
    elif target == "local":
        clients = local_cluster(local_workers)
    elif isinstance(target, str) and target:
        clients = connect(target)
    else:
        raise ValueError(f"dask must be 'local', a scheduler address or a distributed.Client, "
                         f"not {target!r}")
    with clients as client:
        import dask
        # Every worker, present and future, computes on this process's backend.
        client.register_plugin(backend_plugin(), name="sensloc-backend")
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        try:  # a cluster just started may not have its workers yet
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError as error:
            raise ClusterError(f"the Dask cluster at {client.scheduler.address} has no workers "
                               f"(waited {timeout})") from error
        workers = sum(client.nthreads().values())
        yield (lambda function, items: map_unordered(client, function, items)), workers
