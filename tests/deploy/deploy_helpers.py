"""Shared settings of the deploy tests: a tiny MambaAD (64 px, ~0.1 M parameters, 1 epoch)."""

TINY = [
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
    "train.epochs=1",
    "train.device=cpu",
    "eval.gaussian_sigma=1.0",
]
