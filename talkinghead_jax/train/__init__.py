"""The shared trainer (docs/training.md): one loop for every stage.

mesh.py (device mesh) · sharding.py (rules → shardings) · state.py (TrainState, optimizers,
schedules) · checkpoint.py (orbax) · distributed.py (multi-host start, per-host batches) ·
arrays.py (the array-file input) · augment.py (noise at an SNR) · reporting.py (progress line,
TensorBoard) · plots.py · task.py (the stage interface) · tasks/ (Ψ, Φ) · loop.py (`train`) ·
command.py (`talkinghead train`). Import the modules themselves; this package imports nothing.
"""
