"""What the console shows while scenarios train: written by the driver, from Tune's results.

Workers' output is not forwarded to the driver's console unless ``--verbose``
(``lie_ray.infra.console``), so the progress lines come from the one process that sees every
trial's results: one line per epoch and trial, one per finished trial, and Tune's own table
of trials once, when the experiment ends, in place of Tune's status box every 30 s and its
boxed config and result per trial (Tune's ``verbose=1``: 400 of the smoke sweep's 490 lines).
"""

from __future__ import annotations

import logging

from ray import tune

from lie_ray.infra.console import terminal

log = logging.getLogger("lie_ray")
ALREADY_TRAINED = "already_trained"  # set by a trial that found its last epoch's checkpoint


class TrainingProgress(tune.Callback):
    """Per-epoch and per-trial lines; ``table``: Tune's trial table at the end (quiet mode,
    where Tune itself prints nothing)."""

    def __init__(self, epochs: int, table: bool):
        self.epochs, self.table = epochs, table

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = trial.config["scenario"]
        if result.get(ALREADY_TRAINED):
            log.info(
                "%s: already trained for %s epochs: not trained again", name, result.get("epoch")
            )
            return
        log.info(
            "%s: epoch %s/%d done: train loss %.3f, train error %.3f, test error %.3f",
            name,
            result.get("epoch", "?"),
            self.epochs,
            result.get("train_loss", float("nan")),
            result.get("train_error", float("nan")),
            result.get("test_error", float("nan")),
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        log.info(
            "finished training %s: held-out error %.3f after %s epochs (training's own "
            "test split, n=%s)",
            trial.config["scenario"],
            result.get("test_error", float("nan")),
            result.get("epoch", "?"),
            result.get("test_images", "?"),
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        log.error("training %s failed: see %s", trial.config["scenario"], trial.error_file)

    def on_experiment_end(self, trials, **info):
        if self.table:
            print(trial_table(trials), file=terminal(), flush=True)


def trial_table(trials) -> str:
    """Tune's own table of trials (its terminal reporter's layout and columns), as Tune
    prints it at the end of a run."""
    from ray.tune.experimental.output import (
        AIR_TABULATE_TABLEFMT,
        DEFAULT_COLUMNS,
        _get_trial_table_data,
        tabulate,
    )

    data = _get_trial_table_data(  # a column shows where some trial reported it
        trials,
        param_keys=[],
        metric_keys=[*DEFAULT_COLUMNS, "epoch", "train_error", "test_error"],
        all_rows=True,
    )
    rows = [row for part in data.data for row in part.trial_infos]
    return tabulate(rows, headers=data.header, tablefmt=AIR_TABULATE_TABLEFMT, showindex=False)
