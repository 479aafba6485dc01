"""Deployment: threshold calibration, ``mambaad predict`` and ONNX export.

Modules: :mod:`~mambaad.deploy.calibrate` (threshold and normalisation statistics stored in checkpoints),
:mod:`~mambaad.deploy.graph` (the end-to-end RGB -> map/score/decision module), :mod:`~mambaad.deploy.predict`
(scoring files with a checkpoint, official ``.pth`` or ``.onnx``), :mod:`~mambaad.deploy.export` (ONNX).
Nothing is imported here, so the trainer's use of the calibration does not pull in onnx.
"""
