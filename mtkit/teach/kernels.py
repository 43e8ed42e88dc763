"""The Jupyter kernels the notebook runner starts: their environment, their manager (IPC sockets, a private
log) and what they cost (CPU seconds, load)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from queue import Empty
from time import monotonic

__all__ = ['kernel_environment', 'KNOWN_KERNEL_LOG_LINES', 'kernel_manager_class', 'unexpected_kernel_log']


def kernel_environment(exercise_source: str | None = None) -> dict:
    """The environment notebook kernels run in: the inline matplotlib backend (MPLBACKEND unset, which the
    Makefile sets to Agg for scripts), widget callbacks that fail loudly and OpenMP threads that sleep when idle.
    ``exercise_source`` sets ``$MTKIT_EXERCISE_SOURCE``, which a notebook's ``exercise_source = None`` follows
    (the committed outputs are built with ``"solutions"``, see tools/build_notebooks.py)."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env["MTKIT_WIDGET_ERRORS"] = "raise"
    env.setdefault("PYTHONHASHSEED", "0")
    # OpenMP threads that wait by sleeping, not spinning (GNU OpenMP's default spins for a while): on a machine
    # whose cores are shared (other jobs, or a second notebook), spinning threads burn the cores the working
    # threads need, and a step takes 2-3x longer, wall and CPU time alike. Read once, when torch loads OpenMP,
    # so it must be in the kernel's environment. A value you set yourself is kept.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if exercise_source is not None:
        env["MTKIT_EXERCISE_SOURCE"] = exercise_source
    return env


# Lines a healthy kernel may write to its own log (its stderr), which the runner keeps in <out>/logs/ and does not
# repeat on the console. jupyter_client interrupts a kernel (SIGINT) just before asking it to shut down; when the
# signal lands while the kernel is still finishing its last message, ipykernel logs this, then shuts down normally.
KNOWN_KERNEL_LOG_LINES = (
    re.compile(r"^\[IPKernelApp\] ERROR \| KeyboardInterrupt caught in kernel\.?$"),
)


def kernel_manager_class(kernel_log: str | Path | None = None):
    """The kernel manager class the runner's kernels start with (papermill passes it on to nbclient).

    Where ZeroMQ supports it, the IPC transport: the kernel's five sockets are Unix sockets in a private temporary
    folder (removed when the kernel shuts down), so no port is opened, two kernels started at the same moment
    cannot race for the same ports, and ipykernel has no unencrypted TCP to warn about. Elsewhere (Windows), TCP
    with CurveZMQ encryption when jupyter_client and the kernelspec support it, else plain TCP.

    ``kernel_log``: a file that receives the kernel process's stderr (its own log, not the cells' output, which
    goes into the notebook); None: the runner's stderr.
    """

    import zmq  # imported here: the kernel's transport, needed only when a kernel runs
    from jupyter_client import AsyncKernelManager  # imported here: Jupyter is needed only when a kernel runs
    from traitlets import CaselessStrEnum, Type, default  # imported here: Jupyter is needed only when a kernel runs

    ipc = zmq.has("ipc")
    curve = not ipc and zmq.has("curve") and "transport_encryption" in AsyncKernelManager.class_trait_names()

    class RunnerKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc" if ipc else "tcp", config=True)
        client_factory = Type(sliced_wait_client_class(), config=True)
        _socket_dir = None
        _log_handle = None

        @default("ip")
        def _ip_default(self) -> str:
            if self.transport != "ipc":
                return super()._ip_default()
            # absolute and private: "kernel-ipc" (jupyter_client's default without a connection file) would put the
            # sockets in the working directory, shared by every kernel started there
            self._socket_dir = tempfile.mkdtemp(prefix="mtkit-kernel-")
            return os.path.join(self._socket_dir, "kernel")

        if curve:
            @default("transport_encryption")
            def _transport_encryption_default(self) -> str:
                return "auto"  # keys provisioned when the kernelspec declares CurveZMQ support (ipykernel does)

        async def _async_pre_start_kernel(self, **kw):
            if kernel_log is not None and "stderr" not in kw:
                Path(kernel_log).parent.mkdir(parents=True, exist_ok=True)
                self._log_handle = open(kernel_log, "ab")  # kept across restarts, closed at the final cleanup
                kw["stderr"] = self._log_handle
            return await super()._async_pre_start_kernel(**kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                if self._socket_dir:
                    shutil.rmtree(self._socket_dir, ignore_errors=True)
                    self._socket_dir = None
                if self._log_handle is not None:
                    self._log_handle.close()
                    self._log_handle = None

        cleanup_resources = _async_cleanup_resources

    return RunnerKernelManager


# The longest one wait for a kernel message lasts before the socket is looked at again (seconds).
WAIT_SLICE_S = 1.0


def sliced_wait_client_class():
    """A kernel client whose waits for a message look at the socket again every ``WAIT_SLICE_S`` seconds.

    nbclient waits for a cell's reply with one ``poll`` as long as the cell's timeout (and for its output with no
    timeout at all). In the runner a notebook sometimes sat idle, the kernel done and the reply already on the
    socket, until that long poll timed out and found it (seen on notebook 09's first widget cell: 120 s, the small
    profile's cell timeout, then the notebook went on). A wake-up the asyncio poller missed costs one slice here,
    not a whole cell timeout; a wait still ends with ``Empty`` at its own deadline, as before.
    """
    from jupyter_client.asynchronous import AsyncKernelClient  # imported here: Jupyter only when a kernel runs
    from jupyter_client.channels import AsyncZMQSocketChannel  # imported here: Jupyter only when a kernel runs
    from traitlets import Type  # imported here: Jupyter is needed only when a kernel runs

    class SlicedWaitChannel(AsyncZMQSocketChannel):
        async def get_msg(self, timeout: float | None = None) -> dict:
            deadline = None if timeout is None else monotonic() + timeout
            while True:
                left = WAIT_SLICE_S if deadline is None else max(0.0, deadline - monotonic())
                try:
                    return await super().get_msg(timeout=min(WAIT_SLICE_S, left))
                except Empty:
                    if deadline is not None and monotonic() >= deadline:
                        raise

    class SlicedWaitClient(AsyncKernelClient):
        shell_channel_class = Type(SlicedWaitChannel)
        iopub_channel_class = Type(SlicedWaitChannel)
        stdin_channel_class = Type(SlicedWaitChannel)
        control_channel_class = Type(SlicedWaitChannel)

    return SlicedWaitClient


def _children_cpu_seconds() -> float | None:
    """CPU seconds (user + system) of the finished child processes, the notebooks' kernels (None off POSIX)."""
    try:
        import resource  # imported here: Unix only
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the system has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def unexpected_kernel_log(path: str | Path) -> list[str]:
    """The lines of a kernel's log that a healthy run does not write (``KNOWN_KERNEL_LOG_LINES`` left out)."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if line.strip() and not any(p.match(line) for p in KNOWN_KERNEL_LOG_LINES)]
