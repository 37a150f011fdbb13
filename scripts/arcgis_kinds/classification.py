"""Object classifiers (FeatureClassifier): class probabilities and labels through Pro's own object
classification (arcgis.learn.models._inferencing._FeatureClassifier.ChildObjectDetector.vectorize:
ImageNet statistics x 255 or the emd's NormalizationStats, then fastai's ``pred_batch``, whose
activation is the loss's: softmax, or one sigmoid per class for MultiLabeled_Tiles; labels from
the emd's Classes in index order) and through Classify Objects' model loading, normalisation and
prediction (dl_engine.infer.predictor.Predictor.classify); also the logits of the two networks on
the same normalised chips."""
from __future__ import annotations

PROBABILITY_TOLERANCE = 1e-4  # float32 through two implementations of the same network
LOGIT_TOLERANCE = 1e-3


def oracle_predict(package: str, chips: str, out: str) -> dict:
    import numpy as np
    import torch

    from . import oracle_model
    from arcgis.learn.models._inferencing.util import normalize_batch

    model = oracle_model(package)
    emd = model._model_emd
    tiles = np.load(chips).astype(np.float32)
    # vectorize() as Pro runs it (its module imports arcpy, so its two steps are repeated here)
    if "NormalizationStats" in emd:
        normed = normalize_batch(tiles, emd)
    else:
        mean = 255 * np.array([0.485, 0.456, 0.406], dtype=np.float32)
        std = 255 * np.array([0.229, 0.224, 0.225], dtype=np.float32)
        normed = ((tiles.transpose(0, 2, 3, 1) - mean) / std).transpose(0, 3, 1, 2)
    x = torch.tensor(normed).float()
    probs = model.learn.pred_batch(batch=(x, torch.tensor([40])))
    with torch.no_grad():
        logits = model.learn.model.eval()(x)
    multi = emd.get("MetaDataMode") == "MultiLabeled_Tiles"
    names = [c["Name"] for c in emd["Classes"]]
    if multi:  # Pro's default threshold
        labels = [";".join(names[i] for i in np.where(p >= 0.5)[0]) for p in probs.numpy()]
    else:
        labels = [names[i] for i in probs.argmax(1).tolist()]
    np.savez(out, probabilities=probs.numpy(), logits=logits.numpy(), labels=np.array(labels, dtype=str))
    return {"loaded": type(model).__name__, "backbone": emd["ModelParameters"]["backbone"], "multi_label": multi,
            "activation": "sigmoid" if multi else "softmax"}


def our_predict(package: str, tiles) -> dict:
    """Probabilities (N, K), labels and logits of Classify Objects' model, normalisation and predictor."""
    import numpy as np
    import torch

    from dl_engine.infer import objects
    from dl_engine.infer.model import load_model
    from dl_engine.infer.predictor import Predictor
    from dl_engine.runtime import choose_runtime

    model = load_model(package, "classify_objects")
    threshold = objects._multi_label(model)
    predictor = Predictor(model, choose_runtime("cpu", "fp32"))
    probs = predictor.classify(tiles)
    labels = [objects._label(model, p, threshold)[0] for p in probs]
    with torch.no_grad():
        logits = predictor.module(predictor.inputs(tiles)).float().numpy()
    return {"probabilities": probs, "logits": logits, "labels": np.array(labels, dtype=str)}


def agreement(ours: dict, theirs: dict) -> dict:
    import numpy as np

    def label_sets(values):  # multi-label: Pro lists the classes in index order, Classify Objects by probability
        return [frozenset(str(v).split(";")) for v in values]

    labels = float(np.mean([a == b for a, b in zip(label_sets(ours["labels"]), label_sets(theirs["labels"]))]))
    diff = float(np.abs(ours["probabilities"] - theirs["probabilities"]).max())
    logit_diff = float(np.abs(ours["logits"] - theirs["logits"]).max())
    ok = labels == 1.0 and diff <= PROBABILITY_TOLERANCE and logit_diff <= LOGIT_TOLERANCE
    return {"label_agreement": labels, "max_abs_probability_diff": diff, "max_abs_logit_diff": logit_diff,
            "logit_scale": float(np.abs(theirs["logits"]).max()),
            "within_tolerance": diff <= PROBABILITY_TOLERANCE and logit_diff <= LOGIT_TOLERANCE, "ok": ok}
