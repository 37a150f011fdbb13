"""BACKBONE_MODEL in the Processing dialog: an editable drop-down of the backbone keywords
training accepts (``dl_engine.models.backbones.KEYWORDS``), as ArcGIS Pro offers them.

QGIS 3.22 has no string parameter with value hints (3.24+), so the parameter stays a
QgsProcessingParameterString (qgis_process and scripts pass any text: ``timm:<name>``,
``torchgeo:…``) and only the dialog gets this widget, through the parameter's
``widget_wrapper`` metadata (``base.addParameter`` sets it). The dialog imports this module
when it builds the widget; nothing else does (it needs QGIS's GUI).

With a MODEL_TYPE in the same dialog (Train Deep Learning Model), choosing another model
type moves the backbone to that type's default while the backbone is still the previous
type's default; a backbone the user chose or typed stays.
"""

from typing import Dict, List, Optional

from processing.gui.wrappers import WidgetWrapper
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox

from dl_engine.models.backbones import accepted_backbones
from dl_engine.models.registry import specs

from .base import label_keyword

FREE_TEXT_HINT = "or type timm:<name> / torchgeo:<Enum>.<MEMBER>"


def defaults_by_model_type() -> Dict[str, str]:
    """MODEL_TYPE keyword → its default BACKBONE_MODEL (the registry's specs)."""
    return {spec.keyword: spec.default_backbone for spec in specs()}


def backbone_items() -> List[tuple]:
    """(keyword, tooltip) for each backbone keyword, in the engine's order."""
    defaults: Dict[str, List[str]] = {}
    for model_type, backbone in defaults_by_model_type().items():
        defaults.setdefault(backbone, []).append(model_type)
    return [(keyword, f"default for {', '.join(defaults[keyword])}" if keyword in defaults else "")
            for keyword in accepted_backbones()]


class BackboneWidgetWrapper(WidgetWrapper):
    """An editable QComboBox: pick a listed keyword or type any backbone the engine takes."""

    def createWidget(self, **kwargs):  # noqa: N802 (QGIS API name)
        combo = QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.NoInsert)
        for keyword, tip in backbone_items():
            combo.addItem(keyword, keyword)
            if tip:
                combo.setItemData(combo.count() - 1, tip, Qt.ToolTipRole)
        combo.lineEdit().setPlaceholderText(FREE_TEXT_HINT)
        combo.setToolTip(f"A backbone keyword, {FREE_TEXT_HINT}")
        combo.currentTextChanged.connect(lambda _text: self.widgetValueHasChanged.emit(self))
        return combo

    def setValue(self, value):  # noqa: N802 (QGIS API name)
        text = "" if value is None else str(value).strip()
        index = self.widget.findText(text, Qt.MatchFixedString)  # any case, as the engine takes it
        if index >= 0:
            self.widget.setCurrentIndex(index)
        else:
            self.widget.setEditText(text)

    def value(self):
        return self.widget.currentText().strip()

    def postInitialize(self, wrappers):  # noqa: N802 (QGIS API name)
        for wrapper in wrappers:
            if wrapper.parameterDefinition().name() == "MODEL_TYPE":
                self._model_type = wrapper
                self._previous_default = self._default_for(wrapper)
                wrapper.widgetValueHasChanged.connect(self._model_type_changed)

    def _default_for(self, wrapper) -> Optional[str]:
        definition = wrapper.parameterDefinition()
        try:
            index = int(wrapper.parameterValue())
            keyword = label_keyword(definition.options()[index])
        except (TypeError, ValueError, IndexError, AttributeError):
            return None
        return defaults_by_model_type().get(keyword)

    def _model_type_changed(self, *_args):
        new_default = self._default_for(self._model_type)
        if new_default and self.value().upper() in ("", str(self._previous_default or "").upper()):
            self.setValue(new_default)
        self._previous_default = new_default
