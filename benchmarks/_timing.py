"""Per-epoch timing shared by the torch-vs-JAX benchmark scripts (a Lightning callback).

Import it after :func:`_threads.limit_threads` has fixed the threads (it loads Lightning).
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class EpochTimer(Callback):
    """Wall-clock and CPU seconds of every training epoch (validation excluded), one list per
    fit.

    ``phases`` holds one list per ``Trainer.fit`` (deep_cluster trains in two phases);
    ``times`` is every epoch of every phase in order. ``cpu_phases``/``cpu_times`` are the
    same for the process's CPU time (all threads), which, unlike the wall time, does not grow
    when other work shares the cores.
    """

    def __init__(self) -> None:
        self.phases: list[list[float]] = []
        self.cpu_phases: list[list[float]] = []
        self._start = 0.0
        self._cpu_start = 0.0

    @property
    def times(self) -> list[float]:
        return [t for phase in self.phases for t in phase]

    @property
    def cpu_times(self) -> list[float]:
        return [t for phase in self.cpu_phases for t in phase]

    def on_train_start(self, trainer, pl_module) -> None:
        self.phases.append([])
        self.cpu_phases.append([])

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.phases[-1].append(time.perf_counter() - self._start)
        self.cpu_phases[-1].append(time.process_time() - self._cpu_start)
