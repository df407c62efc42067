"""aekit: train an autoencoder on your own data, then use it.

import aekit
run = aekit.train("my_images", epochs=20)
model = aekit.load(run.path)
z = model.encode(images)            # (N, latent_dim)
recon = model.reconstruct(images)   # same layout and dtype as `images`
"""

__version__ = "0.1.0"

from .api import Run, load, train  # noqa: E402

__all__ = ["Run", "__version__", "load", "train"]
