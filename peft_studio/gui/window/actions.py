"""The window's actions (toolbar buttons, menu entries, shortcuts), built in one place from a table of slots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QMainWindow, QWidget


def make_action(parent: QWidget, text: str, shortcut: str | QKeySequence.StandardKey, tip: str,
                slot: Callable[[], object]) -> QAction:
    """An action whose tooltip names its shortcut."""
    action = QAction(text, parent)
    action.setShortcut(QKeySequence(shortcut) if isinstance(shortcut, str) else shortcut)
    action.setToolTip(f"{tip}  [{action.shortcut().toString()}]")
    action.setStatusTip(tip)
    action.triggered.connect(lambda _checked=False: slot())
    return action


def make_combo(items: list[str], tip: str) -> QComboBox:
    box = QComboBox()
    box.addItems(items)
    box.setToolTip(tip)
    box.setMinimumContentsLength(9)
    return box


@dataclass
class Slots:
    """What each action does: the window passes its own methods and its collaborators'."""

    reset: Callable[[], object]
    play_pause: Callable[[], object]
    step_once: Callable[[], object]
    stop: Callable[[], object]
    seed_example: Callable[[], object]
    undo: Callable[[], object]
    redo: Callable[[], object]
    restore_defaults: Callable[[], object]
    fit: Callable[[], object]
    presentation: Callable[[], object]
    export: Callable[[], object]
    open_dataset: Callable[[], object]
    save_adapter: Callable[[], object]
    load_adapter: Callable[[], object]
    save_setup: Callable[[], object]
    open_setup: Callable[[], object]
    zoom_in: Callable[[], object]
    zoom_out: Callable[[], object]
    collapse_layers: Callable[[], object]
    quit: Callable[[], object]
    shortcuts: Callable[[], object] = lambda: None
    about: Callable[[], object] = lambda: None
    toggle_panels: Callable[[], object] = lambda: None
    export_recipe: Callable[[], object] = lambda: None
    open_base: Callable[[], object] = lambda: None
    import_peft: Callable[[], object] = lambda: None
    show_layers: Callable[[], object] = lambda: None
    messages: Callable[[], object] = lambda: None


class StudioActions:
    """Every QAction of the window, with its text, shortcut and tooltip."""

    def __init__(self, parent: QMainWindow, slots: Slots) -> None:
        a = lambda *args: make_action(parent, *args)  # noqa: E731 - a table reads better with a short name
        self.reset = a("⟲ Reset", "Ctrl+R", "Re-initialise the method's parts and the head (the frozen base never "
                       "changes)", slots.reset)
        self.play = a("▶ Play", "Space", "Train in the background; Space pauses/resumes", slots.play_pause)
        self.step = a("Step ▸|", "Right", "Exactly one optimizer step (also '.')", slots.step_once)
        self.step.setShortcuts([QKeySequence("Right"), QKeySequence(".")])
        self.stop = a("■ Stop", "Esc", "Stop the run; the weights stay as trained", slots.stop)
        self.seed = a("Seed example (Adapter)", "Ctrl+1", "The seed's run: seed-pooled base, seed-intents, adapter "
                      "bottleneck 4, lr 0.05, seed 42, 201 steps", slots.seed_example)
        self.undo = a("Undo", QKeySequence.StandardKey.Undo, "Undo the last setting change (Ctrl+Z)", slots.undo)
        self.redo = a("Redo", "Ctrl+Shift+Z", "Redo (Ctrl+Shift+Z)", slots.redo)
        self.restore_defaults = a("Restore defaults", "", "Forget the remembered session, layout and size; back "
                                  "to tiny, LoRA and intents", slots.restore_defaults)
        self.fit = a("Fit", "F", "Fit the whole diagram to the window", slots.fit)
        self.present = a("Presentation", "F5", "Large fonts and thick lines for a projector", slots.presentation)
        self.present.setCheckable(True)
        self.export = a("Export…", "Ctrl+E", "Export the plots (PNG), the curve (CSV) or the diagram (SVG/PNG)",
                        slots.export)
        self.export_recipe = a("Export recipe…", "", "Write a runnable transformers + peft + accelerate project that "
                               "trains this method on the real model (a shipped architecture, a config.json, MiniLM "
                               "or a checkpoint folder)", slots.export_recipe)
        self.open = a("Open dataset…", "Ctrl+O", "Open a dataset file", slots.open_dataset)
        self.open_base = a("Open base…", "Ctrl+Shift+B", "Open a local checkpoint folder as the frozen base (Llama, "
                           "Mistral, Qwen2, GPT-2 or BERT-style; loaded in the background with progress and Cancel)",
                           slots.open_base)
        self.save_adapter = a("Save adapter…", "Ctrl+S", "Save the trained parts and the head (safetensors + setup "
                              "metadata)", slots.save_adapter)
        self.load_adapter = a("Load adapter…", "Ctrl+Shift+O", "Load a saved adapter into the current model (same "
                              "base and method)", slots.load_adapter)
        self.import_peft = a("Import PEFT adapter…", "", "Open a Hugging Face PEFT adapter folder (adapter_config.json "
                             "+ adapter_model.safetensors) on this base: its method, settings and weights; what it "
                             "leaves out is said", slots.import_peft)
        self.save_setup = a("Save setup…", "Ctrl+Shift+S", "Save base, method, options, dataset and training "
                            "settings as a JSON file (no weights)", slots.save_setup)
        self.open_setup = a("Open setup…", "Ctrl+Shift+L", "Open a saved setup (undo with Ctrl+Z)", slots.open_setup)
        self.zoom_in = a("Zoom in", "Ctrl+=", "Zoom in", slots.zoom_in)
        self.zoom_in.setShortcuts([QKeySequence("Ctrl+="), QKeySequence("Ctrl++")])
        self.zoom_out = a("Zoom out", "Ctrl+-", "Zoom out", slots.zoom_out)
        self.layers = a("Collapse layers", "L", "Collapse/expand the repeated layers (a large base draws a few at a "
                        "time)", slots.collapse_layers)
        self.show_layers = a("Show layers…", "Ctrl+G", "Draw layer k, or a range such as 10-13 (an 80-layer base "
                             "draws a few layers at a time)", slots.show_layers)
        self.messages = a("Messages", "Ctrl+Shift+M", "Every message the status bar showed, with its time",
                          slots.messages)
        self.quit = a("Quit", QKeySequence.StandardKey.Quit, "Close the studio", slots.quit)
        self.panels = a("◧ Panels", "Ctrl+B", "Show or hide the side panels (method, training, tensor table)",
                        slots.toggle_panels)
        self.panels.setCheckable(True)
        self.panels.setChecked(True)
        self.shortcuts = a("Keyboard shortcuts", "F1", "Every shortcut of the window", slots.shortcuts)
        self.about = a("About PEFT", "Shift+F1", "The four places a trainable part can go, one click each",
                       slots.about)

    def all(self) -> tuple[QAction, ...]:
        """Every action, in menu order (the shortcuts list is generated from it)."""
        return (self.play, self.step, self.stop, self.reset, self.undo, self.redo, self.fit, self.zoom_in,
                self.zoom_out, self.layers, self.show_layers, self.present, self.panels, self.messages, self.seed,
                self.open, self.open_base, self.open_setup, self.save_setup, self.save_adapter, self.load_adapter,
                self.import_peft, self.export,
                self.export_recipe, self.shortcuts, self.about, self.quit)

    def transport(self) -> tuple[QAction, ...]:
        return self.reset, self.play, self.step, self.stop

    def model_changing(self) -> tuple[QAction, ...]:
        """Actions that change or read the model: disabled while a run holds it."""
        return self.seed, self.open, self.open_base, self.load_adapter, self.open_setup, self.save_adapter, \
            self.import_peft

    def install_menus(self, window: QMainWindow) -> None:
        menus = {
            "&File": (self.open, self.open_base, None, self.open_setup, self.save_setup, None, self.save_adapter,
                      self.load_adapter, self.import_peft, None, self.export, self.export_recipe, None, self.quit),
            "&Edit": (self.undo, self.redo, None, self.restore_defaults),
            "&Run": (self.play, self.step, self.stop, self.reset),
            "&View": (self.fit, self.zoom_in, self.zoom_out, self.layers, self.show_layers, None, self.present,
                      self.panels, self.messages),
            "E&xamples": (self.seed,),
            "&Help": (self.shortcuts, self.about),
        }
        for title, actions in menus.items():
            menu = window.menuBar().addMenu(title)
            menu.setToolTipsVisible(True)
            for action in actions:
                if action is None:
                    menu.addSeparator()
                else:
                    menu.addAction(action)
        for action in (self.zoom_in, self.zoom_out, self.layers, self.show_layers, self.panels, self.messages):
            window.addAction(action)  # shortcuts that live in menus only still need the window to own them
        self.stop.setEnabled(False)  # nothing to stop until a run starts
