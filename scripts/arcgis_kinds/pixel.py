"""Pixel classifiers (UnetClassifier, DeepLab, PSPNetClassifier): class maps through Pro's own
pixel classification (arcgis.learn.models._inferencing.util.pixel_classify_image: its
normalisation and class values) and through Classify Pixels' model loading and normalisation;
also the logits of the two networks on the same normalised chips."""
from __future__ import annotations

LOGIT_TOLERANCE = 1e-3  # float32 through two implementations of the same network


def oracle_predict(package: str, chips: str, out: str) -> dict:
    import numpy as np
    import torch

    from . import oracle_model
    from arcgis.learn.models._inferencing.util import normalize_batch, norm, pixel_classify_image

    model = oracle_model(package)
    emd = model._model_emd
    net = model.learn.model.eval()
    tiles = np.load(chips).astype(np.float32)
    with torch.no_grad():
        values = pixel_classify_image(net, tiles, torch.device("cpu"), None, True, emd)
        normed = normalize_batch(tiles, emd) if "NormalizationStats" in emd else \
            norm(tiles.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        logits = net(torch.tensor(normed).float())
        if isinstance(logits, (tuple, list)):  # networks with an auxiliary head give (main, aux)
            logits = logits[0]
    np.savez(out, values=values.cpu().numpy(), logits=logits.cpu().numpy())
    return {"loaded": type(model).__name__, "backbone": emd["ModelParameters"]["backbone"]}


def our_predict(package: str, tiles) -> dict:
    """Class values (N, h, w) and logits (N, K, h, w) of Classify Pixels' model and normalisation."""
    import numpy as np
    import torch

    from dl_engine.infer.model import load_model
    from dl_engine.infer.writer import class_table

    model = load_model(package, "classify_pixels")
    x = np.stack([model.normalization.normalize(t) for t in tiles])
    with torch.no_grad():
        logits = model.module(torch.from_numpy(x)).numpy()
    return {"values": class_table(model.classes).lut[logits.argmax(1)], "logits": logits}


def agreement(ours: dict, theirs: dict) -> dict:
    import numpy as np

    agree = float((ours["values"] == theirs["values"]).mean())
    diff = float(np.abs(ours["logits"] - theirs["logits"]).max())
    return {"pixels": int(ours["values"].size), "class_agreement": agree, "max_abs_logit_diff": diff,
            "logit_scale": float(np.abs(theirs["logits"]).max()), "within_tolerance": diff <= LOGIT_TOLERANCE,
            "ok": agree == 1.0 and diff <= LOGIT_TOLERANCE}

