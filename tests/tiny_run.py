"""The tiny MambaAD the engine and deploy tests train (64 px, ~0.1 M parameters, CPU), as dotted overrides.

Importable from every test folder: pytest puts ``tests/`` on the path for its conftest.
"""

TINY_RUN = [
    "model.encoder=test_efficientnet",
    "model.encoder_weights=none",
    "model.depths=[1,1,1,1]",
    "model.directions=2",
    "model.d_state=4",
    "model.expand=1",
    "data.image_size=64",
    "data.crop_size=64",
    "data.num_workers=0",
    "train.batch_size=4",
    "train.device=cpu",
    "eval.gaussian_sigma=1.0",
]

# the same small data and device settings as command-line options (``mambaad train`` / ``test`` argv)
SMALL_CLI = [
    "--data.image_size",
    "64",
    "--data.crop_size",
    "64",
    "--data.num_workers",
    "0",
    "--batch-size",
    "4",
    "--device",
    "cpu",
    "--no-progress",
]
