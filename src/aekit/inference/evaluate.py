"""`aekit evaluate`: a trained model next to PCA on any data: MSE, PSNR and SSIM, overall and per channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aekit.core.progress import console
from aekit.core.rundir import resolve_run, write_json
from aekit.data.kind import DataKind
from aekit.evaluation.compare import comparison_table, say_verdict
from aekit.evaluation.validation import final_pass
from aekit.models.checkpoint import load_pca


def evaluate(
    run: str | Path,
    data: Any,
    output: str | Path | None = None,
    *,
    batch_size: int = 256,
    device: str = "auto",
    verbose: bool = True,
    cache_dir: str | Path | None = "default",
    layout: str | None = None,
    id_column: str | None = None,
) -> dict:
    """Evaluate the model in RUN on DATA next to the run's PCA; optionally write JSON to `output`."""
    from aekit.inference.encode import read_for_model
    from aekit.inference.model import load

    run_dir = resolve_run(run)
    model = load(run_dir, device=device)
    pca = load_pca(run_dir)
    items = read_for_model(model, data, verbose=verbose, cache_dir=cache_dir, layout=layout, id_column=id_column)
    x_all = torch.from_numpy(items.array)
    columns = model.columns
    m_all = None if items.mask is None else torch.from_numpy(items.mask)
    kind = DataKind(table=columns is not None, bounded=model.scale > 1, masked=m_all is not None)
    idx = torch.arange(len(items))
    res = final_pass(
        model.model, model.normalizer, pca, x_all, idx, model.device, batch_size, kind, m_all, scores=False
    ).comparison
    res.update(
        run=str(run_dir), data=items.source, skipped=[{"path": s.path, "reason": s.reason} for s in items.skipped]
    )
    if output:
        write_json(Path(output), res)
    if verbose:
        console.print(comparison_table(res, f"aekit evaluate: {res['n_items']} items from {items.source}", columns))
        console.print(say_verdict(res))
    return res
