"""Pixel classifiers UNET, PSPNET, DEEPLAB: registry entries, arguments, emd keys, output
shapes for any band count and input size, bf16/channels_last, learning, DDP readiness and
rebuilding the exact network from the emd."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dl_engine.errors import InputError  # noqa: E402
from dl_engine.models import pixel  # noqa: E402
from dl_engine.models.registry import BuildContext, build_from_emd, get_spec, spec_for_model_name  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = ["UNET", "PSPNET", "DEEPLAB"]
_CACHE = {}


def build(model_type, bands=3, classes=4, backbone="RESNET18", **arguments):
    spec = get_spec(model_type)
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes, chip_size=64,
                       arguments={**spec.arguments, **arguments}, pretrained=False, log=lambda m: None)
    return spec.build(ctx)


def cached(model_type, bands):
    """Built once per module: building is most of a shape test's time."""
    key = (model_type, bands)
    if key not in _CACHE:
        torch.manual_seed(0)
        _CACHE[key] = build(model_type, bands).module.eval()
    return _CACHE[key]


# --- registry ------------------------------------------------------------------------------

@pytest.mark.parametrize("keyword, name, config", [
    ("UNET", "UnetClassifier", "_unet"),
    ("PSPNET", "PSPNetClassifier", "_psp"),
    ("DEEPLAB", "DeepLab", "_deeplab_infrencing"),
])
def test_specs(keyword, name, config):
    spec = get_spec(keyword.lower())
    assert (spec.keyword, spec.model_name, spec.model_type) == (keyword, name, "ImageClassification")
    assert spec.kind == "pixel"
    assert "Classified_Tiles" in spec.formats
    assert spec_for_model_name(name) is spec
    for arg in ("class_balancing", "focal_loss", "ignore_classes", "mixup"):
        assert arg in spec.arguments
    emd = spec.emd_params(dict(spec.arguments), "resnet34")
    assert emd["ModelConfiguration"] == config
    assert emd["ModelParameters"]["backbone"] == "resnet34" and emd["ModelParameters"]["backend"] == "pytorch"


def test_emd_keys_as_arcgis_writes_them():
    unet = get_spec("UNET").emd_params({}, "resnet34")
    assert unet["ignore_mapped_class"] == [] and unet["SupportsVariableTileSize"] is True
    psp = get_spec("PSPNET").emd_params({"pyramid_sizes": "1,2,4", "use_net": "false"}, "resnet50")["ModelParameters"]
    assert psp["pyramid_sizes"] == [1, 2, 4] and psp["use_unet"] is False
    assert {"pointrend", "keep_dilation", "vggv2", "unet_aux_loss"} <= set(psp)
    dl = get_spec("DEEPLAB").emd_params({"keep_dilation": True}, "resnet50")["ModelParameters"]
    assert dl["keep_dilation"] is True and dl["pointrend"] is False


def test_psp_arguments():
    spec = get_spec("PSPNET")
    assert spec.arguments["pyramid_sizes"] == [1, 2, 3, 6] and spec.arguments["use_unet"] is True
    assert pixel.psp_options({})["use_unet"] is True
    assert pixel.psp_options({"use_net": False})["use_unet"] is False  # the alias INTERFACE.md lists
    assert pixel.psp_options({"use_unet": False, "use_net": None})["use_unet"] is False
    with pytest.raises(InputError) as err:
        pixel.psp_options({"pyramid_sizes": [0, 2]})
    assert err.value.parameter == "ARGUMENTS"


@pytest.mark.parametrize("model_type", ["PSPNET", "DEEPLAB"])
def test_pointrend_is_refused(model_type):
    with pytest.raises(InputError) as err:
        build(model_type, pointrend=True)
    assert err.value.parameter == "ARGUMENTS" and "pointrend" in err.value.message


# --- networks -------------------------------------------------------------------------------

@pytest.mark.parametrize("model_type", MODELS)
@pytest.mark.parametrize("bands", [pytest.param(1, marks=pytest.mark.heavy), 3, pytest.param(4, marks=pytest.mark.heavy)])
def test_output_shape(model_type, bands):
    net = cached(model_type, bands)
    with torch.no_grad():
        for size in (64, 70):  # 70: not a multiple of 32
            assert net(torch.randn(2, bands, size, size)).shape == (2, 4, size, size)
        assert net(torch.randn(1, bands, 64, 96)).shape == (1, 4, 64, 96)


@pytest.mark.parametrize("model_type", MODELS)
def test_bf16_autocast_and_channels_last(model_type):
    net = cached(model_type, 4).to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 64, 64).to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.shape == (2, 4, 64, 64) and torch.isfinite(y.float()).all()


@pytest.mark.trains
@pytest.mark.parametrize("model_type, arguments", [
    ("UNET", {}), ("PSPNET", {}), ("PSPNET", {"use_unet": False}), ("DEEPLAB", {})])
def test_learns_and_uses_every_parameter(model_type, arguments):
    """A few steps on a pixel-wise task lower the loss; every parameter gets a gradient, so
    DistributedDataParallel needs no find_unused_parameters; a batch of one trains too."""
    torch.manual_seed(0)
    built = build(model_type, bands=3, classes=2, **arguments)
    net = built.module.train()
    assert built.encoder_parameters and all(any(p is q for q in net.parameters()) for p in built.encoder_parameters)
    # 32 x 32 blocks whose class is the sign of band 1: learnable at every model's scale
    signs = torch.tensor([[[[0.0, 1], [1, 0]]], [[[1, 1], [0, 1]]]])
    target = torch.nn.functional.interpolate(signs, scale_factor=32).squeeze(1).long()
    x = torch.randn(2, 3, 64, 64) * 0.5
    x[:, 0] += target * 2 - 1
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for step in range(4):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), target)
        loss.backward()
        if step == 0:
            assert all(p.grad is not None for p in net.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, losses
    net(torch.randn(1, 3, 64, 64)).sum().backward()  # batch of one


# One rank of test_distributed_data_parallel: python -c DDP_RANK RANK STORE OUT
DDP_RANK = r'''
import json, sys
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from dl_engine.models.registry import BuildContext, get_spec

rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
torch.manual_seed(rank)  # each rank starts from other weights: DDP must start them from rank 0's
spec = get_spec("DEEPLAB")
ctx = BuildContext(backbone="RESNET18", in_channels=4, num_classes=3, chip_size=64,
                   arguments=dict(spec.arguments), pretrained=False, log=lambda m: None)
net = spec.build(ctx).module.train()
before = {k: v.detach().clone() for k, v in net.named_parameters()}
ddp = DistributedDataParallel(net)  # no find_unused_parameters: every parameter must get a gradient
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
losses, missing = [], set()
for step in range(2):
    data = torch.Generator().manual_seed(100 * rank + step)  # each rank its own batch
    x = torch.randn(2, 4, 64, 64, generator=data)
    y = torch.randint(0, 3, (2, 64, 64), generator=data)
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(ddp(x), y)
    loss.backward()
    missing |= {k for k, p in net.named_parameters() if p.grad is None}
    opt.step()
    losses.append(loss.item())
torch.save({"before": before, "after": {k: v.detach() for k, v in net.named_parameters()}},
           f"{out}/rank{rank}.pt")
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"losses": losses, "missing": sorted(missing)}, f)
dist.destroy_process_group()
'''


@pytest.mark.trains
def test_distributed_data_parallel(tmp_path):
    """Two CPU ranks (gloo) train DEEPLAB under DistributedDataParallel on different batches: the
    run ends, every parameter gets a gradient, the losses are finite, training moved the weights
    and both ranks end with the same weights (rank 1 started from other ones)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    logs = [tmp_path / f"rank{rank}.err" for rank in (0, 1)]
    deadline = time.monotonic() + 300
    ranks = []
    try:
        for rank in (0, 1):
            with open(logs[rank], "w") as err:
                ranks.append(subprocess.Popen([sys.executable, "-c", DDP_RANK, str(rank), str(tmp_path / "store"),
                                               str(tmp_path)], env=env, stdout=subprocess.DEVNULL, stderr=err))
        # until both end, one fails (the other would wait for it) or time is up
        while (any(p.poll() is None for p in ranks) and not any(p.poll() for p in ranks)
               and time.monotonic() < deadline):
            time.sleep(0.2)
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, p in enumerate(ranks):
        assert p.returncode == 0, f"rank {rank} ended with {p.returncode}: {logs[rank].read_text()[-3000:]}"
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for rank, report in enumerate(reports):
        assert report["missing"] == [], f"rank {rank}: parameters without a gradient"
        assert len(report["losses"]) == 2 and all(math.isfinite(v) for v in report["losses"]), report
    assert reports[0]["losses"] != reports[1]["losses"]  # the ranks saw different batches
    names = list(weights[0]["after"])
    assert names and names == list(weights[1]["after"])
    assert not all(torch.equal(weights[0]["before"][k], weights[1]["before"][k]) for k in names)
    assert not all(torch.equal(weights[0]["before"][k], weights[0]["after"][k]) for k in names), "nothing trained"
    for k in names:
        torch.testing.assert_close(weights[0]["after"][k], weights[1]["after"][k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.parametrize("backbone, model_type", [
    pytest.param("VGG11", "UNET", marks=pytest.mark.heavy),  # a full-size first feature map
    pytest.param("VGG11", "DEEPLAB", marks=pytest.mark.heavy),  # no dilated variant: output stride 32
    *[(b, m) for b in ("MOBILENET_V2", "timm:convnext_atto") for m in MODELS],  # convnext: first map at 1/4
])
def test_other_backbones(backbone, model_type):
    net = build(model_type, bands=4, classes=3, backbone=backbone).module.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 4, 70, 70)).shape == (1, 3, 70, 70)


def test_dilation():
    deeplab = build("DEEPLAB", backbone="MOBILENET_V2")  # our network (ResNets: arcgis.learn's, test_arcgis_deeplab.py)
    assert max(deeplab.module.encoder.feature_info.reduction()) == 16
    psp = build("PSPNET", keep_dilation=True, backbone="MOBILENET_V2")
    assert max(psp.module.encoder.feature_info.reduction()) == 8
    assert max(build("PSPNET", backbone="MOBILENET_V2").module.encoder.feature_info.reduction()) == 32


# --- rebuilding from the emd ----------------------------------------------------------------

@pytest.mark.parametrize("model_type, backbone, arguments", [
    ("UNET", "RESNET18", {}),
    ("PSPNET", "RESNET18", {"pyramid_sizes": [1, 2], "use_net": False, "keep_dilation": True}),
    ("PSPNET", "timm:convnext_atto", {}),
    ("DEEPLAB", "MOBILENET_V2", {}),
])
@pytest.mark.heavy
def test_build_from_emd_round_trip(model_type, backbone, arguments):
    spec = get_spec(model_type)
    built = build(model_type, bands=4, classes=3, backbone=backbone, **arguments)
    params = spec.emd_params({**spec.arguments, **arguments}, built.backbone_name)
    emd = {"ModelName": spec.model_name, "ExtractBands": [0, 1, 2, 3],
           "Classes": [{"Value": 1, "Name": "a"}, {"Value": 2, "Name": "b"}],
           "ModelParameters": {**params["ModelParameters"], "backbone": built.backbone_name, "backend": "pytorch"},
           "Engine": {"network": params.get("Network", "deeplearningtools")}}  # the layout, as our packages say
    rebuilt = build_from_emd(emd)
    rebuilt.load_state_dict(built.module.state_dict(), strict=True)
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), built.module.eval()(x), atol=1e-5)


def test_build_from_emd_unknown_model():
    with pytest.raises(InputError):
        build_from_emd({"ModelName": "NoSuchModel", "ModelParameters": {"backbone": "resnet18"}})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model_type", MODELS)
def test_cuda_bf16_channels_last_step(model_type):
    net = build(model_type, bands=4, classes=3).module.cuda().to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 70, 70, device="cuda").to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = net(x)
    assert y.shape == (2, 3, 70, 70)
    target = torch.zeros(2, 70, 70, dtype=torch.long, device="cuda")
    torch.nn.functional.cross_entropy(y.float(), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
