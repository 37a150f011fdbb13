"""Networks of the engine: the model registry (``registry``), timm backbones
(``backbones``) and the model types registered by ``pixel`` (UNET, PSPNET, DEEPLAB).

Kept import-light: torch and timm load only when a network is built.
"""

from .registry import (BuildContext, BuiltModel, ModelSpec, build_from_emd, get_spec, model_types,
                       register, spec_for_model_name)

__all__ = ["BuildContext", "BuiltModel", "ModelSpec", "build_from_emd", "get_spec", "model_types", "register",
           "spec_for_model_name"]
