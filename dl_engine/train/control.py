"""How a caller steers one training run from outside (AutoDL's trials): a wall-clock deadline
for the training loop, a soft stop, and a per-epoch hook (Optuna's pruning).

Unlike ``cancel`` (which raises Canceled and writes nothing), each of these ends
training gracefully: the best epoch so far is kept and the package is written. In-process
only (it holds callables), so it is not part of TrainConfig."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

# stop reasons, as the leaderboard shows them
TIME_LIMIT, STOPPED, PRUNED, EARLY_STOPPING = "time limit", "stopped", "pruned", "early stopping"


@dataclass
class TrainControl:
    # time.time() at which training must end; validating the last (partial) epoch and writing
    # the package follow, so the caller keeps a reserve for them
    deadline: Optional[float] = None
    stop: Callable[[], bool] = lambda: False  # soft stop: end like at the deadline
    # after each epoch: (epoch from 0, monitored value or None) -> True to stop (pruning)
    on_epoch: Optional[Callable[[int, Optional[float]], bool]] = None
    # a model that learned nothing: the warning lists what to try with Train Deep Learning Model's
    # parameters (MAX_EPOCHS, LEARNING_RATE, …); False (AutoDL's trials, which have none): the reason only
    advise: bool = True
    # filled in by the run
    batch_size: Optional[int] = None  # the batch size used (the automatic one where asked)
    training_started: Optional[float] = None  # time.time() when the first epoch began
    training_ended: Optional[float] = None  # time.time() when the loop ended (package writing follows)
    stop_reason: str = ""  # TIME_LIMIT, STOPPED, PRUNED, EARLY_STOPPING or ""

    def time_left(self, now: Optional[float] = None) -> Optional[float]:
        if self.deadline is None:
            return None
        return self.deadline - (time.time() if now is None else now)
