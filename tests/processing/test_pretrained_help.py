"""The training tools' help says where pretrained weights come from: EFFICIENTNET_LITE0's offline ImageNet
weights, downloads cached in the weights folder (the setting or DLT_WEIGHTS_DIR), random weights offline, and
Import Pretrained Weights (issue 14)."""

import pytest
from qgis.core import QgsApplication


@pytest.mark.parametrize("algorithm", ["deeplearningtools:traindeeplearningmodel",
                                       "deeplearningtools:trainusingautodl"])
def test_training_help_says_where_pretrained_weights_come_from(provider, algorithm):
    help_text = QgsApplication.processingRegistry().algorithmById(algorithm).shortHelpString()
    for words in ("EFFICIENTNET_LITE0", "work offline", "downloaded on", "DLT_WEIGHTS_DIR",
                  "Pretrained weights folder", "Options ▸ Processing ▸ Providers ▸ Deep learning tools",
                  "~/.cache/huggingface/hub", "random weights", "Import Pretrained Weights"):
        assert words in " ".join(help_text.split()), words


def test_import_help_names_the_weights_folder_setting(provider):
    help_text = QgsApplication.processingRegistry().algorithmById(
        "deeplearningtools:importpretrainedweights").shortHelpString()
    assert "Pretrained weights folder" in help_text and "DLT_WEIGHTS_DIR" in help_text
