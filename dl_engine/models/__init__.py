"""Networks of the engine: the model registry (``registry``; ``spec`` says what a model type
is), timm backbones (``backbones``) and the model families that declare the types: ``pixel``
(UNET, PSPNET, DEEPLAB), ``detection`` (SSD, RETINANET, FASTERRCNN, MASKRCNN, YOLOV3) and
``classification`` (FEATURE_CLASSIFIER).

Kept import-light: torch and timm load only when a network is built.
"""

from .registry import (REGISTRY, BuildContext, BuiltModel, ModelSpec, build_from_emd, get_spec, model_types,
                       register, registered, spec_for_model_name, specs)

__all__ = ["REGISTRY", "BuildContext", "BuiltModel", "ModelSpec", "build_from_emd", "get_spec", "model_types",
           "register", "registered", "spec_for_model_name", "specs"]
