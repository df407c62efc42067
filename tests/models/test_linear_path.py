"""The PCA-initialised linear path runs in fp32 whatever the autocast (models/linear_path.py)."""

import subprocess
import sys

import torch

from aekit.models.conv import ConvAutoencoder
from aekit.models.mlp import MLPAutoencoder


def test_the_linear_path_is_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    for model in (ConvAutoencoder((3, 16, 16), 8, depth=2), MLPAutoencoder((12, 1, 1), 3)):
        x = torch.rand(5, *model.in_shape)
        z = torch.randn(5, 8 if isinstance(model, ConvAutoencoder) else 3)
        with torch.no_grad():
            want_enc, want_dec = model.lin_enc(x.flatten(1)), model.lin_dec(z)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                enc, dec = model.linear_encode(x.flatten(1)), model.linear_decode(z)
                plain = model.lin_enc(x.flatten(1))  # what autocast makes of the layer itself
        assert plain.dtype == torch.bfloat16  # so the check below is not vacuous
        assert enc.dtype == dec.dtype == torch.float32
        torch.testing.assert_close(enc, want_enc)
        torch.testing.assert_close(dec, want_dec)


def test_a_batch_of_32_128x128_rgb_images_in_bf16_does_not_kill_the_process():
    """torch 2.13's bf16 CPU matmul dies with SIGFPE at (32, 49152) @ (49152, 64) on CPUs with
    AVX512-BF16 (this VM's): `aekit encode` of a 128x128 RGB run, which encodes in the run's bf16,
    died on a last batch of 32 items. Run in a child process: a SIGFPE would end pytest itself."""
    code = (
        "import torch\n"
        "from aekit.models.conv import ConvAutoencoder\n"
        "m = ConvAutoencoder((3, 128, 128), 64, depth=3, width=8).eval()\n"
        "with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "    out = m(torch.rand(32, 3, 128, 128))\n"
        "print(tuple(out.recon.shape), out.z.dtype)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["(32,", "3,", "128,", "128)", "torch.float32"]
