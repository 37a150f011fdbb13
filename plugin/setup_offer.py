"""Offering the environment set-up in QGIS's message bar (non-modal, never a popup).

- At start (``initGui``) when no engine Python is ready.
- On first use: the first time in a session that one of our algorithms' dialogs opens while the engine is
  not set up (``DeepLearningAlgorithm.dialog_opening``, which the plugin points here).
The message carries a "Set up…" button that opens the environment dialog.
"""

from typing import Callable, Optional

from qgis.core import Qgis, QgsProcessingException
from qgis.PyQt.QtWidgets import QPushButton

from ..processing_provider import engine_process

TITLE = "Deep learning tools"
SET_UP = "Set up…"
AT_START = "The deep learning environment is not installed yet: the tools need it to train and classify."
ON_USE = "{tool} needs the deep learning environment, which is not installed yet."


def engine_missing() -> bool:
    """Whether no Python can run the engine: no DLT_PYTHON or setting, the managed environment not ready
    (``manager.ready_python()``) and QGIS's own Python without the engine's packages. Fast: no subprocess."""
    try:
        engine_process.resolve_worker_python()
    except QgsProcessingException:
        return True
    return False


class SetupOffer:
    """The plugin's one offer; ``open_dialog()`` opens the environment dialog."""

    def __init__(self, message_bar, open_dialog: Callable[[], None],
                 is_missing: Optional[Callable[[], bool]] = None):
        self.message_bar = message_bar
        self.open_dialog = open_dialog
        self._is_missing = is_missing  # None: engine_missing
        self.item = None  # the message shown, while it is in the bar
        self.offered_on_use = False

    def is_missing(self) -> bool:
        return (self._is_missing or engine_missing)()

    def at_start(self) -> bool:
        """At plugin start: the offer when the engine is missing. Returns whether it was shown."""
        return self._offer(AT_START) if self.is_missing() else False

    def on_use(self, algorithm=None) -> bool:
        """An algorithm's dialog opens: the offer once per session, when the engine is missing and the
        start message is not showing any more."""
        if self.offered_on_use or self.showing():
            return False
        if not self.is_missing():
            return False
        self.offered_on_use = True
        tool = algorithm.displayName() if algorithm is not None else "This tool"
        return self._offer(ON_USE.format(tool=tool))

    def showing(self) -> bool:
        if self.item is None:
            return False
        try:
            return self.item in self.message_bar.items()
        except RuntimeError:  # the C++ item is gone
            return False

    def _offer(self, text: str) -> bool:
        if self.message_bar is None:
            return False
        self.withdraw()
        item = self.message_bar.createMessage(TITLE, text)
        button = QPushButton(SET_UP, item)
        button.clicked.connect(self._set_up)
        item.layout().addWidget(button)
        self.item = item
        self.message_bar.pushWidget(item, Qgis.Warning, 0)  # stays until dismissed or set up
        return True

    def _set_up(self) -> None:
        self.withdraw()
        self.open_dialog()

    def withdraw(self) -> None:
        """Take the message out of the bar (set up, or the plugin unloads)."""
        item, self.item = self.item, None
        if item is not None and self.message_bar is not None:
            try:
                if item in self.message_bar.items():
                    self.message_bar.popWidget(item)
            except RuntimeError:
                pass


def button_of(item) -> Optional[QPushButton]:
    """The "Set up…" button of a message (tests, and anyone scripting the bar)."""
    for button in item.findChildren(QPushButton):
        if button.text() == SET_UP:
            return button
    return None
