"""Training and evaluation engine: the loop, checkpoints, evaluation and reports of a run.

Entry points: :func:`~mambaad.engine.trainer.train` (config -> run folder),
:func:`~mambaad.engine.evaluator.evaluate_model` + :func:`~mambaad.engine.evaluator.write_reports`
(model -> per-class metrics -> files) and :func:`~mambaad.engine.checkpoint.load_model` (checkpoint ->
model). Submodules are imported on use so ``import mambaad.engine`` stays light.
"""
