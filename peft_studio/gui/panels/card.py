"""The method card: where the part sits, intuition, trade-offs, formula with numbers, live count."""

from __future__ import annotations

from html import escape

from PySide6.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

from ..window.controller import Controller

# The seed's glossary, in the app's words.
GLOSSARY = {
    "PEFT": "parameter-efficient fine-tuning: adapt a frozen model by training a small added part",
    "soft prompt": "trainable vectors placed before the input; not words anyone wrote",
    "KV prefix": "extra trainable keys and values that every attention can look at",
    "bottleneck": "squeeze down to m numbers, then back up: few parameters, a real side path",
    "residual": "the small adaptation is added back to the original hidden state",
    "activation scaling": "multiply hidden channels by learned gains: amplify some, mute others",
}


class MethodCardView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.count = QLabel("")
        self.count.setObjectName("bigCount")
        self.count.setWordWrap(True)  # a long method name wraps inside the side panel instead of widening it
        self.count.setToolTip("Trainable parameters of the method (head excluded): updates as you change settings")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        layout.addWidget(self.count)
        layout.addWidget(self.browser)

    def show_for(self, controller: Controller) -> None:
        exp = controller.experiment
        method, config = exp.method, exp.config
        card = method.card
        count = exp.method_parameter_count()
        head = exp.head_parameter_count()
        self.count.setText(f"{method.title}: {count:,} trainable  (+ head {head:,})")
        formula = escape(method.live_formula(config))
        notes = "".join(f"<li>{escape(n)}</li>" for n in exp.shape_notes()[:6])
        glossary = "".join(f"<b>{escape(k)}</b>: {escape(v)}<br>" for k, v in GLOSSARY.items())
        self.browser.setHtml(
            f"<h3 style='margin:2px'>{escape(method.title)}</h3>"
            f"<p><b>Where:</b> {escape(card.where)}</p>"
            f"<p><b>Intuition:</b> {escape(card.intuition)}</p>"
            f"<p><b style='color:#1b7f4d'>+</b> {escape(card.advantages)}<br>"
            f"<b style='color:#b3261e'>−</b> {escape(card.limitations)}</p>"
            f"<p><b>Computation:</b> <code>{formula}</code><br>"
            f"<b>Code that runs:</b> <code>{escape(method.code(config))}</code></p>"
            f"<p><b>Count:</b> <code>{escape(method.formula_text(config, exp.base))}</code></p>"
            + (f"<p><b>Shapes:</b><ul style='margin:0'>{notes}</ul></p>" if notes else "")
            + f"<hr><p style='color:#5b6672'>{glossary}</p>")
